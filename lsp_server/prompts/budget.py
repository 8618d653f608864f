"""Fitting a prompt into a token budget, counted with the model's own tokenizer."""

from __future__ import annotations

from collections.abc import Callable

from lsp_server.prompts.context import PromptContext


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


def _fit_pieces(
    context: PromptContext, count: Callable[[str], int], budget: int
) -> tuple[str, int]:
    """The joined prefix and the sum of its pieces' token counts (separators included)."""
    current = _trim_top_stable(context.current, count, budget)
    used = count(current)
    # Reserve room for the current code in coarse steps, so that the context above it
    # changes only when the current code crosses a step, not at every keystroke.
    reserve = -(-used // RESERVE_STEP_TOKENS) * RESERVE_STEP_TOKENS
    room = left = max(0, budget - max(reserve, used))
    header = context.scope_header
    if header and count(header) + 1 > left:
        header = _trim_bottom(header, count, left - 1) if left > 1 else ""
    left -= count(header) + 1 if header else 0
    imports = context.imports
    if imports and count(imports) + 2 > left:
        imports = ""
    left -= count(imports) + 2 if imports else 0
    chosen: list[str] = []
    for definition in reversed(context.definitions):
        cost = count(definition) + 2
        if cost <= left:
            chosen.insert(0, definition)
            left -= cost
    head = [piece for piece in (imports, *chosen) if piece]
    text = "\n\n\n".join(head)
    if header:
        text = f"{text}\n\n\n{header}\n" if text else f"{header}\n"
    elif text:
        text += "\n\n\n"
    return text + current, used + (room - left)


def fit_suffix(suffix: str, count: Callable[[str], int], budget: int) -> str:
    return _trim_bottom(suffix, count, budget)
