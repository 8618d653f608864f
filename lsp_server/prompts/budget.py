"""Fitting a prompt into a token budget, counted with the model's own tokenizer.

One budget for every prompt the server sends (completions, docstrings, tests): the
model's context less the tokens to generate, less a margin, counted with the model's
tokenizer (:class:`PromptBudget`). A prompt has parts kept whole and one part that is
cut, at whole lines, to the room the others leave:

- completions keep the code nearest the cursor: lines go from the top of the current
  code, in chunks, and the context above it goes by priority (:func:`fit_prefix`);
- docstrings and generated tests keep the top of the definition they are about (its
  signature, docstring and first lines): lines go from its end (:meth:`PromptBudget.keep_start`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lsp_server.prompts.context import PromptContext, class_line

# Tokens kept free beside a prompt and its generation: BOS, FIM markers, and what joining
# counted pieces can add.
MARGIN_TOKENS = 16


def prompt_room(n_ctx: int, max_tokens: int, reserved: int = 0) -> int:
    """Tokens a prompt's cut part may take in a context of ``n_ctx``: less ``max_tokens``
    to generate, the ``reserved`` tokens of its other parts and the margin."""
    return n_ctx - max_tokens - reserved - MARGIN_TOKENS


@dataclass(frozen=True)
class PromptBudget:
    """A loaded model's context size and its tokenizer's counter."""

    n_ctx: int
    count: Callable[[str], int]

    @classmethod
    def counting(cls, n_ctx: int, tokenize: Callable[[str], Sequence[int]]) -> PromptBudget:
        return cls(n_ctx, lambda text: len(tokenize(text)))

    def room(self, max_tokens: int, *, beside: str = "", reserved: int = 0) -> int:
        """Tokens left for the cut part of a prompt whose other parts are ``beside`` (or
        take ``reserved`` tokens), with ``max_tokens`` to generate (0 when none are left)."""
        reserved += self.count(beside) if beside else 0
        return max(0, prompt_room(self.n_ctx, max_tokens, reserved))

    def keep_start(self, text: str, room: int) -> str:
        """``text`` cut to ``room`` tokens: whole lines dropped from its end (a single
        line too long for the room keeps its longest head that fits)."""
        return _keep_start(text, self.count, room)


def _keep_start(text: str, count: Callable[[str], int], budget: int) -> str:
    if count(text) <= budget:
        return text
    lines = text.split("\n")
    low, high, best = 1, len(lines) - 1, ""
    while low <= high:  # binary search on the number of lines kept
        middle = (low + high) // 2
        candidate = "\n".join(lines[:middle])
        if count(candidate) <= budget:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    if best:
        return best
    first = lines[0]
    low, high = 1, len(first)
    while low <= high:  # one enormous first line: its longest head that fits
        middle = (low + high) // 2
        if count(first[:middle]) <= budget:
            best, low = first[:middle], middle + 1
        else:
            high = middle - 1
    return best


def _trim_top(text: str, count: Callable[[str], int], budget: int) -> str:
    """Drop whole lines from the top of ``text`` until it fits (keeps the cursor's end)."""
    if count(text) <= budget:
        return text
    lines = text.split("\n")
    low, high = 1, len(lines) - 1
    best = lines[-1]
    while low <= high:  # binary search on the number of lines dropped
        middle = (low + high) // 2
        candidate = "\n".join(lines[middle:])
        if count(candidate) <= budget:
            best = candidate
            high = middle - 1
        else:
            low = middle + 1
    if count(best) > budget:  # a single enormous line: the longest tail that fits
        low, high, tail = 1, len(best), ""
        while low <= high:
            middle = (low + high) // 2
            if count(best[-middle:]) <= budget:
                tail, low = best[-middle:], middle + 1
            else:
                high = middle - 1
        best = tail
    return best


def _trim_bottom(text: str, count: Callable[[str], int], budget: int) -> str:
    if count(text) <= budget:
        return text
    lines = text.split("\n")
    while len(lines) > 1 and count("\n".join(lines)) > budget:
        lines = lines[: max(1, len(lines) * 3 // 4)]
    kept = "\n".join(lines)
    return kept if count(kept) <= budget else ""


def fit_prefix(context: PromptContext, count: Callable[[str], int], budget: int) -> str:
    """The prompt prefix: as much context as fits, in stable-first order.

    Priority when the budget is short: the current code, then the class header, the
    imports, and the used definitions nearest the cursor. Pieces are counted one by one;
    joined, they can tokenize longer (SentencePiece adds a word-start token to each
    piece, newline runs merge differently), so the whole is counted again and refitted
    to a smaller budget while it overflows.
    """
    text, estimate = _fit_pieces(context, count, budget)
    if estimate + JOIN_SLACK_TOKENS <= budget:
        return text  # clearly inside: skip tokenizing the whole prompt once more
    inner = budget
    while inner > 1 and (over := count(text) - budget) > 0:
        inner = max(1, inner - over)
        text, _ = _fit_pieces(context, count, inner)
    return text


# Lines are dropped from the top of the current code in chunks of this many, so that
# the prompt's first tokens (and the KV cache behind them) stay put while the user types.
TRIM_CHUNK_LINES = 16
# The context above the current code gets the budget that the current code leaves,
# measured in steps of this many tokens, for the same reason.
RESERVE_STEP_TOKENS = 256


def _trim_top_stable(text: str, count: Callable[[str], int], budget: int) -> str:
    """Like :func:`_trim_top`, but drop lines only in whole chunks counted from the top."""
    if count(text) <= budget:
        return text
    lines = text.split("\n")
    chunks = (len(lines) - 1) // TRIM_CHUNK_LINES
    low, high, best = 1, chunks, None
    while low <= high:
        middle = (low + high) // 2
        candidate = "\n".join(lines[middle * TRIM_CHUNK_LINES :])
        if count(candidate) <= budget:
            best, high = candidate, middle - 1
        else:
            low = middle + 1
    return best if best is not None else _trim_top(text, count, budget)


# Joining pieces can cost a few tokens more than their separate counts (word-start
# markers, merged newlines); a prompt this far inside its budget is not counted again.
JOIN_SLACK_TOKENS = 32


# The stable head (imports, outline, class header) gets at most this share of the budget,
# so that it is the same for every function whose code fits in the rest: moving between
# functions then re-evaluates only what follows it.
HEAD_SHARE = 0.5
# The outline takes at most this many tokens of the head (whole entries, from the top),
# and at most this share of it; the imports at most this share (whole statements, from
# the top). The class header gets the rest.
OUTLINE_MAX_TOKENS = 192
OUTLINE_SHARE = 0.25
IMPORTS_SHARE = 0.5
# A brief class header (``PromptContext.brief_header``): the class line, its docstring's
# first line and the first members, in at most this many tokens.
BRIEF_HEADER_TOKENS = 64
_ENTRY = re.compile(r"\n(?=\S)")


def _keep_entries(text: str, count: Callable[[str], int], budget: int) -> str:
    """The longest run of ``text``'s entries from the top (an entry: a line and the
    indented lines after it) that fits ``budget``."""
    if not text or budget <= 0:
        return ""
    if count(text) <= budget:
        return text
    return _keep_pieces(_ENTRY.split(text), count, budget)


def _keep_pieces(pieces: list[str], count: Callable[[str], int], budget: int) -> str:
    """The most of ``pieces`` from the first on, joined by newlines, that fits ``budget``
    ("" when not even the first does): a binary search on how many are kept."""
    low, high, best = 1, len(pieces), ""
    while low <= high:
        middle = (low + high) // 2
        candidate = "\n".join(pieces[:middle])
        if count(candidate) <= budget:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best


_DOCSTRING_START = re.compile(r"^([ \t]+[rRuU]?)(\"\"\"|\'\'\')(.*)$")


def short_docstring(header: str) -> str:
    """``header`` (a class line, its docstring, its members) with the docstring cut to its
    first line of text: a long class docstring must not push the member list out."""
    lines = header.split("\n")
    for first in range(1, len(lines)):
        if "\n".join(lines[:first]).rstrip().endswith(":"):
            break
    else:
        return header
    found = _DOCSTRING_START.match(lines[first])
    if found is None:
        return header
    lead, quote, rest = found.groups()
    if quote in rest:  # a one-line docstring
        return header
    for last in range(first + 1, len(lines)):
        if quote in lines[last]:
            break
    else:
        return header  # not closed: leave it to the line trimming
    summary = rest.strip() or next(
        (line.strip() for line in lines[first + 1 : last] if line.strip()), "")
    summary = summary.split(quote)[0].rstrip("\\").rstrip()
    short = f"{lead}{quote}{summary}{quote}"
    return "\n".join([*lines[:first], short, *lines[last + 1 :]])


def _fit_header(header: str, count: Callable[[str], int], budget: int) -> str:
    """The class header in ``budget`` tokens: its docstring shortened to one line first,
    then whole members dropped from the end."""
    if not header or budget <= 0:
        return ""
    if count(header) <= budget:
        return header
    header = short_docstring(header)
    if count(header) <= budget:
        return header
    lines = header.split("\n")
    opened = next((i for i, line in enumerate(lines) if line.rstrip().endswith(":")), None)
    if opened is None or opened + 1 >= len(lines):
        return _trim_bottom(header, count, budget)
    indent = lines[opened + 1][: len(lines[opened + 1]) - len(lines[opened + 1].lstrip())]
    # Where each member starts (a line at the members' indentation): keep whole members,
    # the first together with the class line.
    starts = [i for i in range(opened + 1, len(lines))
              if lines[i].startswith(indent) and lines[i][len(indent):len(indent) + 1] not in (" ", "\t", "")]
    bounds = [0, *starts[1:], len(lines)]
    members = ["\n".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])]
    return _keep_pieces(members, count, budget) or _trim_bottom(header, count, budget)


def _fit_pieces(
    context: PromptContext, count: Callable[[str], int], budget: int
) -> tuple[str, int]:
    """The joined prefix and the sum of its pieces' token counts (separators included).

    Layout: imports, outline, class header (the head, stable for the file and the
    class), then the definitions the current code uses, then the current code. The head
    is cut to a room that depends only on the budget (and on the current code where it
    is longer than the rest), never on the definitions: those take what is left."""
    current = _trim_top_stable(context.current, count, budget)
    used = count(current)
    # Reserve room for the current code in coarse steps, so that the context above it
    # changes only when the current code crosses a step, not at every keystroke.
    reserve = -(-used // RESERVE_STEP_TOKENS) * RESERVE_STEP_TOKENS
    room = max(0, budget - max(reserve, used))
    head_room = min(room, int(budget * HEAD_SHARE))
    # The head is fitted in its text order, each piece to a room that depends only on the
    # head's room and the pieces before it: a class header (large, and not the same for
    # every class) must not decide how much of the imports and the outline come first,
    # or moving to a method of another size re-evaluates the whole prompt (found by the
    # jump replay on ftplib.py, whose FTP class header alone overflows the head).
    imports = _keep_entries(context.imports, count, int(head_room * IMPORTS_SHARE) - 2)
    head_left = head_room - (count(imports) + 2 if imports else 0)
    outline = _keep_entries(context.outline, count,
                            min(OUTLINE_MAX_TOKENS, int(head_room * OUTLINE_SHARE), head_left - 2))
    head_left -= count(outline) + 2 if outline else 0
    header_room = head_left - 1
    if context.brief_header:
        header_room = min(header_room, BRIEF_HEADER_TOKENS)
    header = _fit_header(context.scope_header, count, header_room)
    head = [piece for piece in (imports, outline, header) if piece]
    left = room - sum(count(piece) + 2 for piece in head)
    opener = ""
    if header:  # the class line again after the definitions, so that the method is in it
        opener = class_line(header)
        left -= count(opener) + 1 if opener else 0
    chosen: list[str] = []
    for definition in reversed(context.definitions):
        cost = count(definition) + 2
        if cost <= left:
            chosen.insert(0, definition)
            left -= cost
    if not chosen:
        opener = ""
    parts = [*head, *chosen]
    text = "\n\n\n".join(parts)
    if header and not chosen:
        text += "\n"
    elif opener:
        text += "\n\n\n" + opener + "\n"
    elif text:
        text += "\n\n\n"
    total = used + sum(count(piece) + 2 for piece in parts) + (count(opener) + 1 if opener else 0)
    return text + current, total


def fit_suffix(suffix: str, count: Callable[[str], int], budget: int) -> str:
    return _trim_bottom(suffix, count, budget)
