"""Stop rules applied while tokens stream, and the clean-up of a finished suggestion.

All pure functions of strings (and a tree-sitter parse for the final check).
"""

from __future__ import annotations

from dataclasses import dataclass

from lsp_server.parsing.syntax import error_count, parse
from lsp_server.prompts.context import indent_width, leading_ws

CODEX_STOPS = ("class", "def", "#", "if", "print")


def codex_stop_sequences(function_indent: str) -> tuple[str, ...]:
    """The Codex paper's stop sequences, at the current function's indentation."""
    return tuple(f"\n{function_indent}{word}" for word in CODEX_STOPS)


def _repetition_cut(lines: list[str]) -> int | None:
    """Index of the first line of a repetition loop, or None.

    A loop is the same non-trivial line three times in a row, or the same block of two
    to four lines twice in a row.
    """
    for size in range(1, 5):
        needed = 3 if size == 1 else 2
        for start in range(0, len(lines) - size * needed + 1):
            block = lines[start : start + size]
            if not any(len(line.strip()) > 3 for line in block):
                continue
            if all(
                lines[start + k * size : start + (k + 1) * size] == block for k in range(1, needed)
            ):
                return start + size
    return None


_OPENERS = (":", "(", "[", "{", ",", "\\", "=")


def complete_line_cut(text: str) -> int | None:
    """Where to cut ``text`` once time is up: after its last complete line that does not
    leave a block or bracket open (``if x:`` alone is not yet useful code); None if no
    such line is out yet."""
    end = text.rfind("\n")
    while end > 0:
        start = text.rfind("\n", 0, end) + 1
        line = text[start:end].split("#", 1)[0].rstrip()
        if line.strip() and not line.endswith(_OPENERS):
            return end
        end = text.rfind("\n", 0, end)
    return None


def _leaves_open(text: str) -> bool:
    """Whether the last line opens a block or bracket (``if x:``, ``f(a,``): in code that
    is already broken the parse cannot tell, so such a candidate is not taken."""
    lines = [line for line in text.split("\n") if line.strip()]
    return bool(lines) and lines[-1].split("#", 1)[0].rstrip().endswith(_OPENERS)


def line_stop_rule(text: str) -> int | None:
    """Single-line mode: stop at the first newline once some code is out."""
    newline = text.find("\n")
    while newline >= 0:
        if text[:newline].strip():
            return newline
        newline = text.find("\n", newline + 1)
    return None


def block_stop_rule(block_width: int, first_line_is_new: bool):  # type: ignore[no-untyped-def]
    """Block mode: stop when a line dedents to (or past) the block's header, or loops.

    ``first_line_is_new`` says whether the suggestion's first line is a line of its own
    (the cursor's line was blank) or the end of the cursor's line.
    """

    def rule(text: str) -> int | None:
        lines = text.split("\n")
        offset = 0
        for index, line in enumerate(lines):
            stripped = line.strip()
            if (index > 0 or first_line_is_new) and stripped and stripped[0] not in "#)]}":
                if indent_width(line) <= block_width:
                    return max(offset - 1, 0)
            offset += len(line) + 1
        loop = _repetition_cut(lines[:-1])
        if loop is not None:
            return len("\n".join(lines[:loop]))
        return None

    return rule


@dataclass(frozen=True)
class CleanupInput:
    suggestion: str
    mode: str  # "line" | "block"
    # Text of the cursor's line before and after the cursor.
    line_before: str
    line_after: str
    # Document lines after the cursor's line.
    following: tuple[str, ...]
    # Indentation unit of the document ("\t" or spaces).
    indent_unit: str = "    "


def _fix_indentation(lines: list[str], unit: str) -> list[str]:
    if unit != "\t":
        return [line.replace("\t", "    ") if not line.strip() else _expand_lead(line) for line in lines]
    fixed = []
    for line in lines:
        lead = leading_ws(line)
        if " " in lead:
            width = len(lead.expandtabs(4))
            lead = "\t" * (width // 4) + " " * (width % 4)
        fixed.append(lead + line[len(leading_ws(line)) :])
    return fixed


def _expand_lead(line: str) -> str:
    lead = leading_ws(line)
    return lead.expandtabs(4) + line[len(lead) :] if "\t" in lead else line


def clean(data: CleanupInput) -> str:
    """Trim a raw suggestion: mode, repeats of following lines, indentation, loops."""
    text = data.suggestion.replace("\r\n", "\n")
    if data.mode == "line":
        rule = line_stop_rule(text)
        text = text[:rule] if rule is not None else text.split("\n", 1)[0] if text.strip() else ""
    lines = [line.rstrip() for line in text.split("\n")]
    loop = _repetition_cut(lines)
    if loop is not None:
        lines = lines[:loop]
    # Drop lines that repeat what already follows the cursor.
    next_code = next((line.strip() for line in data.following if line.strip()), None)
    if next_code:
        for index, line in enumerate(lines):
            if index == 0 and data.line_before.strip():
                continue
            if line.strip() == next_code and len(next_code) > 1:
                lines = lines[:index]
                break
    lines = _fix_indentation(lines, data.indent_unit)
    while lines and not lines[-1].strip():
        lines.pop()
    result = "\n".join(lines)
    if not result.strip():
        return ""
    return result


def overlap_candidates(suggestion: str, line_after: str) -> list[str]:
    """The suggestion with every overlap with the rest of the line removed, longest first,
    then the suggestion as it is. The parse check picks among them."""
    after = line_after.rstrip()
    candidates = []
    body = suggestion.rstrip()
    for size in range(len(after), 0, -1):
        if body.endswith(after[:size]):
            trimmed = body[: len(body) - size]
            if trimmed.strip():
                candidates.append(trimmed)
    candidates.append(suggestion)
    return candidates


def line_prefixes(suggestion: str) -> list[str]:
    """Cut-back candidates, longest first: the whole suggestion, then minus trailing lines."""
    lines = suggestion.split("\n")
    result = []
    for end in range(len(lines), 0, -1):
        piece = "\n".join(lines[:end]).rstrip()
        if piece.strip() and piece not in result:
            result.append(piece)
    return result


def choose_parseable(
    window_before: str, window_after: str, candidates: list[str]
) -> str | None:
    """The first candidate that leaves the window parseable.

    A candidate that parses cleanly wins; if none does (the surrounding code is itself
    broken), the first that adds no error to the window as it stands is taken.
    """
    start = len(window_before.encode("utf-8"))
    line_start = window_before.rfind("\n") + 1
    focus_start = len(window_before[:line_start].encode("utf-8"))
    baseline: int | None = None  # parsed only when a candidate has errors
    fallback: str | None = None
    for candidate in candidates:
        source = (window_before + candidate + window_after).encode("utf-8")
        focus = (focus_start, start + len(candidate.encode("utf-8")))
        errors = error_count(parse(source).root_node, focus)
        if errors == 0:
            return candidate
        if fallback is None and not _leaves_open(candidate):
            if baseline is None:
                source = (window_before + window_after).encode("utf-8")
                baseline = error_count(parse(source).root_node, (focus_start, start))
            if errors <= baseline:
                fallback = candidate
    return fallback


def detect_indent_unit(text: str) -> str:
    tabs = spaces = 0
    for line in text.split("\n")[:2000]:
        if line.startswith("\t"):
            tabs += 1
        elif line.startswith("    "):
            spaces += 1
    return "\t" if tabs > spaces else "    "
