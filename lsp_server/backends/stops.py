"""Where to stop a generated text: the request's stop strings, then a loop (the text
repeating itself), then its stop rule, then, once its time budget has passed, the
budget's cut. One rule for the local and the remote backends."""

from __future__ import annotations

import time

from lsp_server.backends.base import GenerationRequest


def check_stops(
    text: str, request: GenerationRequest, started: float, now: float | None = None
) -> tuple[int | None, str]:
    """``(index to cut the text at, stop reason)``, or ``(None, "")`` to go on."""
    cut: int | None = None
    for stop in request.stop:
        found = text.find(stop)
        if found >= 0 and (cut is None or found < cut):
            cut = found
    if cut is not None:
        return cut, "stop"
    looped = repetition(text)
    if looped is None:
        looped = nesting(text)
    if looped is not None:
        return looped, "repetition"
    if request.stop_rule is not None:
        ruled = request.stop_rule(text)
        if ruled is not None:
            return ruled, "rule"
    budget = request.time_budget
    if budget is not None:
        elapsed = (time.perf_counter() if now is None else now) - started
        if elapsed > budget.seconds:
            cut = budget.cut(text)
            if cut is not None:
                return cut, "time"
            if budget.hard_seconds is not None and elapsed > budget.hard_seconds:
                return len(text), "time"
    return None, ""


# A text that ends in at least this many copies of one piece (then maybe part of it),
# spanning at least this many characters, is a loop: small models fall into them
# (``get_width(self.tk.get_width(self.tk.get_width(self.…``) and would decode to the
# token limit. Long enough not to catch real code (``[0, 0, 0, 0]``, ``b"\\x00\\x00"``).
LOOP_COPIES = 3
LOOP_MIN_CHARS = 40
LOOP_MAX_PERIOD = 40


def repetition(text: str) -> int | None:
    """Where to cut ``text`` if it ends in a loop within a line: after the loop's first
    copy of the repeated piece (which holds a letter or digit, and no line end). None
    when it does not."""
    n = len(text)
    if n < LOOP_MIN_CHARS:
        return None
    last = text[-1]
    for period in range(1, min(LOOP_MAX_PERIOD, n // LOOP_COPIES) + 1):
        # The span below reaches ``least`` only where the text's last ``least - period``
        # characters equal the ones ``period`` before them (the last character first):
        # that rules out nearly every period of text that is no loop without a Python
        # loop over characters (this runs at every generated token).
        least = max(LOOP_MIN_CHARS, LOOP_COPIES * period)
        if text[n - 1 - period] != last or least > n or text[n - least : n - period] != text[n - least + period :]:
            continue
        # The text's last ``span`` characters repeat with this period.
        span = period
        while span < n and text[n - span - 1] == text[n - span - 1 + period]:
            span += 1
        if span >= LOOP_MIN_CHARS and span >= LOOP_COPIES * period:
            piece = text[n - period :]
            # Whole lines that repeat are the block rule's (postprocess); this is the
            # loop inside a line, which no line end ever stops.
            if "\n" not in piece and any(c.isalnum() for c in piece):
                return n - span + period
    return None


# A line whose calls nest without end, a new name each time
# (``self.error_reply(self.sock, self.error_temp(self.sock, self.error_perm(self.…``), is
# no copy of one piece, but its shape is: with names and numbers as ``x`` and no spaces,
# it ends in at least NEST_COPIES copies of one piece that opens more brackets than it
# closes and holds a comma (an argument before the next call), spanning LOOP_MIN_CHARS
# or more. Real code nests like this (``os.path.join(os.path.dirname(os.path.abspath(``,
# ``max(0, min(10, round(x, 2)))``), but with no comma in the piece, pieces shorter than
# NEST_MIN_PERIOD, or fewer copies.
NEST_COPIES = 4
NEST_MIN_PERIOD = 6
_OPENERS, _CLOSERS = "([{", ")]}"


def _shape(line: str) -> tuple[str, list[int]]:
    """``line`` with each run of letters, digits and underscores as one ``x`` and no
    whitespace, and where in ``line`` each character of the shape starts."""
    shape: list[str] = []
    starts: list[int] = []
    index, n = 0, len(line)
    while index < n:
        char = line[index]
        if char.isalnum() or char == "_":
            starts.append(index)
            shape.append("x")
            while index < n and (line[index].isalnum() or line[index] == "_"):
                index += 1
            continue
        if not char.isspace():
            starts.append(index)
            shape.append(char)
        index += 1
    return "".join(shape), starts


def nesting(text: str) -> int | None:
    """Where to cut ``text`` if its last line nests calls without end (see NEST_COPIES):
    before the second copy of the repeated piece. None when it does not."""
    line_start = text.rfind("\n") + 1
    if len(text) - line_start < LOOP_MIN_CHARS:
        return None
    line = text[line_start:]
    # Each of the NEST_COPIES copies holds a comma and opens a bracket.
    if line.count(",") < NEST_COPIES or sum(map(line.count, _OPENERS)) < NEST_COPIES:
        return None
    shape, starts = _shape(line)
    n = len(shape)
    for period in range(NEST_MIN_PERIOD, min(LOOP_MAX_PERIOD, n // NEST_COPIES) + 1):
        span = period
        while span < n and shape[n - span - 1] == shape[n - span - 1 + period]:
            span += 1
        if span < NEST_COPIES * period:
            continue
        piece = shape[n - period :]
        opened = sum(piece.count(c) for c in _OPENERS) - sum(piece.count(c) for c in _CLOSERS)
        first = starts[n - span + period]  # where the second copy starts in the line
        if opened > 0 and "," in piece and len(text) - line_start - starts[n - span] >= LOOP_MIN_CHARS:
            return line_start + first
    return None
