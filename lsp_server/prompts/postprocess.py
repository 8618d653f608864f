"""Stop rules applied while tokens stream, and the clean-up of a finished suggestion.

All pure functions of strings (and a tree-sitter parse for the final check);
:func:`finish` takes a raw generation to the text that is suggested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from lsp_server.parsing.syntax import definition_node, error_count, parse
from lsp_server.prompts.context import (
    BLOCK_HEADER,
    enclosing_definitions,
    indent_width,
    leading_ws,
)
from lsp_server.prompts.modes import SuggestionMode
from lsp_server.prompts.snapshot import Snapshot

# At module level, a suggestion is parse-checked within this many lines around the cursor.
_WINDOW_LINES = 60

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
    mode: SuggestionMode
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
    # An overlap is no longer than the suggestion: sizes up to the whole rest of the line
    # took 11 s on a 900 KB line (a slice of the rest for each size).
    for size in range(min(len(after), len(body)), 0, -1):
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


def detect_indent_unit(text: str, max_lines: int = 2000) -> str:
    """A tab where more of the first ``max_lines`` lines start with a tab than with four
    spaces; else four spaces. Counted in C (``str.count``): a request calls this on 22
    KB around the cursor, where a split into lines took 68 us."""
    if text.count("\n") >= max_lines:  # rare: a window of short lines
        text = "\n".join(text.split("\n", max_lines)[:max_lines])
    lines = "\n" + text
    tabs, spaces = lines.count("\n\t"), lines.count("\n    ")
    return "\t" if tabs > spaces else "    "


# -- from a raw generation to the suggestion ----------------------------------------------


def finish(snapshot: Snapshot, cursor: int, start: int, mode: SuggestionMode, raw: str) -> str | None:
    """The text to suggest for ``raw`` generated at ``cursor``, replacing ``start..cursor``
    (the typed indentation on a blank line): cleaned, indented as the user typed, cut to
    what leaves the code around it parseable; None if nothing useful is left."""
    text = snapshot.text
    line_start = text.rfind("\n", 0, cursor) + 1
    line_end = text.find("\n", cursor)
    line_end = len(text) if line_end < 0 else line_end
    following = tuple(text[line_end + 1 :].split("\n", 40)[:40]) if line_end < len(text) else ()
    cleaned = clean(
        CleanupInput(
            suggestion=raw,
            mode=mode,
            line_before=text[line_start:cursor],
            line_after=text[cursor:line_end],
            following=following,
            indent_unit=detect_indent_unit(text[max(0, line_start - 20000) : line_start + 2000]),
        )
    )
    if not cleaned:
        return None
    if start != cursor:
        indented = keep_user_indent(cleaned, text[start:cursor])
        if indented is None:
            return None
        cleaned = indented
    window_start, window_end, head = parse_window(snapshot, cursor)
    before = head + text[window_start:start]
    after = text[cursor:window_end]
    line_after = text[cursor:line_end]
    candidates: list[str] = []
    for piece in line_prefixes(cleaned):
        for candidate in overlap_candidates(piece, line_after):
            if candidate not in candidates:
                candidates.append(candidate)
    chosen = choose_parseable(before, after, candidates)
    if chosen is None or not chosen.strip():
        return None
    if start != cursor and chosen.strip() == "":
        return None
    return chosen


def opened_block(text: str, start: int, cursor: int, raw: str) -> tuple[str, int] | None:
    """(generated part of the line, header indentation) when the suggested line ends a
    block header such as ``for x in y:``; else None."""
    generated = raw.split("\n", 1)[0]
    if not generated.strip():
        return None
    line_start = text.rfind("\n", 0, cursor) + 1
    full = text[line_start:start] + generated if start != cursor else text[line_start:cursor] + generated
    if not BLOCK_HEADER.match(full) or full.rstrip().endswith(("\\", ",")):
        return None
    return generated, indent_width(full)


def keep_user_indent(suggestion: str, typed_ws: str) -> str | None:
    """On a blank line the suggestion carries its own indentation and replaces the
    whitespace typed so far; keep at least what the user typed."""
    first = suggestion.split("\n", 1)[0]
    if first.startswith(typed_ws):
        return suggestion
    model_ws = leading_ws(first)
    delta = indent_width(typed_ws) - indent_width(model_ws)
    if delta <= 0:
        return None  # the model's indentation conflicts with the user's
    pad = typed_ws[len(typed_ws) - delta :] if typed_ws.endswith(" " * delta) else " " * delta
    return "\n".join(pad + line if line.strip() else line for line in suggestion.split("\n"))


def parse_window(snapshot: Snapshot, cursor: int) -> tuple[int, int, str]:
    """A code-point span around the cursor to parse-check a suggestion in, and the text to
    put before it: the innermost enclosing definition, or some lines around the cursor at
    module level.

    An indented definition (a method) does not parse alone, so the head opens one
    ``if 1:`` block per indentation level of the definitions around it: parsing the
    method then costs what the method costs, not its whole class (a 1,700-line class in
    tkinter took 30 ms a request to parse)."""
    text = snapshot.text
    cursor_byte = snapshot.byte_of(cursor)
    chain = enclosing_definitions(snapshot.tree, snapshot.source, cursor_byte)
    if chain:
        inner = definition_node(chain[0])
        start_byte = snapshot.source.rfind(b"\n", 0, inner.start_byte) + 1
        end_byte = max(inner.end_byte, cursor_byte)
        if end_byte - start_byte < 400_000:
            start = snapshot.char_of(start_byte)
            end = snapshot.char_of(end_byte)
            line_end = text.find("\n", max(end, cursor))
            width = indent_width(_line_text(snapshot.source, inner.start_byte))
            levels: dict[int, str] = {}
            for outer in chain[1:]:
                indent = leading_ws(_line_text(snapshot.source, definition_node(outer).start_byte))
                if indent_width(indent) < width:
                    levels.setdefault(indent_width(indent), indent)
            if width and 0 not in levels:
                levels[0] = ""
            head = "".join(f"{levels[key]}if 1:\n" for key in sorted(levels))
            return start, len(text) if line_end < 0 else line_end, head
    start = cursor
    for _ in range(_WINDOW_LINES):
        found = text.rfind("\n", 0, max(start - 1, 0))
        if found < 0:
            start = 0
            break
        start = found + 1
    end = cursor
    for _ in range(_WINDOW_LINES):
        found = text.find("\n", end + 1)
        if found < 0:
            end = len(text)
            break
        end = found
    return start, max(end, cursor), ""


def _line_text(source: bytes, offset: int) -> str:
    start = source.rfind(b"\n", 0, offset) + 1
    end = source.find(b"\n", offset)
    return source[start : len(source) if end < 0 else end].decode("utf-8", errors="replace")


def continued_rule(before: str, request: Any) -> Callable[[str], int | None]:
    """The stop strings and rule of ``request`` (a generation that wrote ``before``), for
    a generation that goes on after ``before``: checked on the whole text, so a stop
    string or a block's end that spans the join is found; the cut is in the new text."""
    from lsp_server.backends.stops import check_stops

    whole_request = replace(request, time_budget=None)

    def rule(text: str) -> int | None:
        cut, _ = check_stops(before + text, whole_request, 0.0)
        return None if cut is None else max(0, cut - len(before))

    return rule
