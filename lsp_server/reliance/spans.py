"""AI-written character spans and how they follow text changes.

A span is a half-open ``(start, end)`` range of code points. A record keeps a sorted
list of disjoint, non-adjacent spans: the characters the model wrote that are still
there. A change ``(start, end, new_text)`` deletes ``text[start:end]`` and inserts
``new_text``, which a human wrote: characters before the change stay put, characters
after it shift by the change in length, deleted characters are gone. Text inserted
exactly at a span's start or end lies outside it, so typing before accepted code
shifts it and typing right after it does not grow it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from lsp_server.parsing.document import TextChange, common_ends

Span = tuple[int, int]


def normalize(spans: Iterable[Span]) -> list[Span]:
    """Sort ``spans``, drop empty ones and merge overlapping or touching ones."""
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def follow(spans: Sequence[Span], change: TextChange) -> list[Span]:
    """The spans after ``change`` (offsets of the text before it)."""
    start, end = change.start, change.end
    delta = len(change.new_text) - (end - start)
    out: list[Span] = []
    for a, b in spans:
        if b <= start:
            out.append((a, b))
            continue
        if a >= end:
            out.append((a + delta, b + delta))
            continue
        if a < start:
            out.append((a, start))
        if b > end:
            out.append((end + delta, b + delta))
    return normalize(out)


def size(spans: Iterable[Span]) -> int:
    return sum(b - a for a, b in spans)


def hull(spans: Sequence[Span]) -> Span | None:
    return (spans[0][0], spans[-1][1]) if spans else None


def intersect(spans: Iterable[Span], start: int, end: int) -> list[Span]:
    """The parts of ``spans`` inside ``[start, end)``."""
    return normalize((max(a, start), min(b, end)) for a, b in spans if a < end and b > start)


def subtract(spans: Iterable[Span], start: int, end: int) -> list[Span]:
    """``spans`` without ``[start, end)``."""
    out: list[Span] = []
    for a, b in spans:
        if b <= start or a >= end:
            out.append((a, b))
            continue
        if a < start:
            out.append((a, start))
        if b > end:
            out.append((end, b))
    return normalize(out)


def shift(spans: Iterable[Span], delta: int) -> list[Span]:
    return [(a + delta, b + delta) for a, b in spans]


# Below this many changed characters a change is used as it comes; above it the
# replaced text is diffed against the new text so that a reformat or a whole-buffer
# replacement keeps the AI attribution of every character it did not really change.
REFINE_THRESHOLD = 64


def refine(old_text: str, change: TextChange) -> list[TextChange]:
    """Split a large replacement into the minimal changes that produce the same text.

    Returns changes in offsets of the text before each of them, in order, like the
    ones :class:`~lsp_server.parsing.document.DocumentStore` reports.
    """
    old = old_text[change.start : change.end]
    new = change.new_text
    if not old or not new or len(old) + len(new) < REFINE_THRESHOLD:
        return [change]
    prefix, suffix = common_ends(old, new)
    old_mid = old[prefix : len(old) - suffix]
    new_mid = new[prefix : len(new) - suffix]
    base = change.start + prefix
    pieces = _line_diff(old_mid, new_mid)
    # Each change is in offsets of the text left by the ones before it.
    out: list[TextChange] = []
    moved = 0
    for old_start, old_end, text in pieces:
        if old_start == old_end and not text:
            continue
        out.append(TextChange(base + old_start + moved, base + old_end + moved, text))
        moved += len(text) - (old_end - old_start)
    return out


def _line_diff(old: str, new: str) -> list[tuple[int, int, str]]:
    """Changes ``(old_start, old_end, new_text)`` that turn ``old`` into ``new``, by lines."""
    if not old or not new:
        return [(0, len(old), new)]
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    old_starts = _starts(old_lines)
    new_starts = _starts(new_lines)
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    out: list[tuple[int, int, str]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        out.append((old_starts[i1], old_starts[i2], new[new_starts[j1] : new_starts[j2]]))
    return out


def _starts(lines: list[str]) -> list[int]:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return starts
