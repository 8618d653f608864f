"""Conversions between LSP positions (line, UTF-16 column) and offsets into a text.

LSP counts columns in UTF-16 code units; Python strings count code points and
tree-sitter counts UTF-8 bytes. Every conversion in the project goes through here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


class PositionOutOfRange(ValueError):
    """A position that lies past the end of its line or of the document."""


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def column_length(text: str, encoding: str = "utf-16") -> int:
    """Length of ``text`` in the code units of a negotiated LSP position encoding."""
    if encoding == "utf-32" or text.isascii():
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    return utf16_len(text)


def column_to_char(line: str, column: int, encoding: str = "utf-16") -> int:
    """Index into ``line`` (code points) of a ``column`` in ``encoding`` units; clamps."""
    if encoding == "utf-32" or line.isascii():
        return min(column, len(line))
    if encoding == "utf-8":
        units = 0
        for index, char in enumerate(line):
            if units >= column:
                return index
            units += len(char.encode("utf-8"))
        return len(line)
    return utf16_to_char(line, column)


def utf16_to_char(line: str, column: int) -> int:
    """Index into ``line`` (code points) of a UTF-16 ``column``; clamps to the line's end."""
    if line.isascii():
        return min(column, len(line))
    units = 0
    for index, char in enumerate(line):
        if units >= column:
            return index
        units += 2 if ord(char) > 0xFFFF else 1
    return len(line)


# LSP line ends: "\n", "\r\n" and "\r". Form feed, vertical tab, \x1c-\x1e, NEL
# (\x85) and U+2028/U+2029 are ordinary characters (str.splitlines would break there).
_LINE_END_CHAR = re.compile(r"[\r\n]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


def _starts_after(parts: list[str] | list[bytes]) -> np.ndarray:
    """Start offsets of ``parts`` that were split at a one-unit separator."""
    starts = np.zeros(len(parts), dtype=np.int64)
    if len(parts) > 1:
        lengths = np.fromiter(map(len, parts[:-1]), dtype=np.int64, count=len(parts) - 1)
        np.cumsum(lengths + 1, out=starts[1:])
    return starts


def _breaks_only_at_lf(text: str) -> bool:
    """Whether every line end of ``text`` ends in ``\n`` (no lone ``\r``)."""
    return "\r" not in text or text.count("\r") == text.count("\r\n")


@dataclass(frozen=True, eq=False)
class LineIndex:
    """Start offsets of every line of a text, in code points and in UTF-8 bytes.

    Lines end at ``\n``, ``\r\n`` or a lone ``\r``, as LSP says; nothing else breaks a
    line. A line's span (:meth:`line_span`) leaves out its line end. The index is
    immutable: an edit makes a new one (:meth:`edited`), so snapshots keep theirs.
    """

    char_starts: np.ndarray
    byte_starts: np.ndarray
    text_length: int
    byte_length: int
    # Some line ends with a lone "\r": tree-sitter counts rows at "\n" only, so its
    # points are computed apart (see byte_point). May stay True after the last lone
    # "\r" went away; that only costs speed.
    lone_cr: bool = False

    @classmethod
    def build(cls, text: str, source: bytes | None = None) -> LineIndex:
        if source is None:
            source = text.encode("utf-8")
        ascii_only = len(source) == len(text)
        if _breaks_only_at_lf(text):
            chars = _starts_after(text.split("\n"))
            raw = chars if ascii_only else _starts_after(source.split(b"\n"))
            return cls(chars, raw, len(text), len(source))
        chars = np.array([0, *(m.end() for m in _LINE_BREAK.finditer(text))], dtype=np.int64)
        raw = (
            chars
            if ascii_only
            else np.array(
                [0, *(m.end() for m in _LINE_BREAK_BYTES.finditer(source))], dtype=np.int64
            )
        )
        return cls(chars, raw, len(text), len(source), lone_cr=True)

    def edited(
        self,
        new_text: str,
        start: int,
        end: int,
        inserted: str,
        start_byte: int,
        old_end_byte: int,
        inserted_bytes: int,
    ) -> LineIndex:
        """The index of ``new_text``: the old text with ``[start, end)`` (code points;
        bytes ``[start_byte, old_end_byte)``) replaced by ``inserted``.

        Only the line starts the edit can move are looked at again: a start ``s``
        depends on the characters at ``s - 1`` and ``s``, so those in
        ``[start, start + len(inserted)]`` are recomputed, earlier ones kept and later
        ones shifted. Cost: the edit's size plus one copy of the two arrays.
        """
        inserted_end = start + len(inserted)
        delta = len(inserted) - (end - start)
        byte_delta = inserted_bytes - (old_end_byte - start_byte)
        keep = int(np.searchsorted(self.char_starts, start, side="left"))
        tail = int(np.searchsorted(self.char_starts, end, side="right"))
        window: list[int] = [] if keep else [0]
        window_bytes: list[int] = [] if keep else [0]
        lone_cr = self.lone_cr
        previous, previous_byte = start, start_byte
        first = max(start, 1)
        for match in _LINE_END_CHAR.finditer(new_text, first - 1, inserted_end):
            at = match.start()
            if new_text[at] == "\r" and new_text[at + 1 : at + 2] == "\n":
                continue  # the "\n" after it ends the line
            if new_text[at] == "\r":
                lone_cr = True
            line_start = at + 1
            piece = new_text[previous:line_start]
            previous_byte += len(piece) if piece.isascii() else len(piece.encode("utf-8"))
            previous = line_start
            window.append(line_start)
            window_bytes.append(previous_byte)
        return LineIndex(
            np.concatenate(
                (
                    self.char_starts[:keep],
                    np.array(window, dtype=np.int64),
                    self.char_starts[tail:] + delta,
                )
            ),
            np.concatenate(
                (
                    self.byte_starts[:keep],
                    np.array(window_bytes, dtype=np.int64),
                    self.byte_starts[tail:] + byte_delta,
                )
            ),
            self.text_length + delta,
            self.byte_length + byte_delta,
            lone_cr,
        )

    @property
    def line_count(self) -> int:
        return len(self.char_starts)

    def line_span(self, line: int, text: str) -> tuple[int, int]:
        """Code-point span of ``line`` of ``text``, without its line end."""
        start = int(self.char_starts[line])
        if line + 1 >= self.line_count:
            return start, self.text_length
        end = int(self.char_starts[line + 1]) - 1
        if text[end] == "\n" and end > start and text[end - 1] == "\r":
            end -= 1
        return start, end

    def line_of_offset(self, offset: int) -> int:
        return int(np.searchsorted(self.char_starts, offset, side="right")) - 1

    def line_of_byte(self, byte_offset: int) -> int:
        return int(np.searchsorted(self.byte_starts, byte_offset, side="right")) - 1


def offset_at(
    text: str,
    index: LineIndex,
    line: int,
    character: int,
    *,
    strict: bool,
    encoding: str = "utf-16",
) -> int:
    """Code-point offset of an LSP position.

    With ``strict`` a position past the end of its line or of the document raises
    :class:`PositionOutOfRange`; without it the position is clamped, as the LSP
    specification asks: a character past the line's end means the line's end, a line
    past the last means the document's end.
    """
    if line < 0 or character < 0:
        raise PositionOutOfRange(f"negative position {line}:{character}")
    if line >= index.line_count:
        if strict:
            raise PositionOutOfRange(
                f"line {line} is past the end of the document ({index.line_count} lines)"
            )
        return len(text)
    start, end = index.line_span(line, text)
    line_text = text[start:end]
    if strict and character > column_length(line_text, encoding):
        raise PositionOutOfRange(
            f"character {character} is past the end of line {line} "
            f"({column_length(line_text, encoding)} {encoding.upper()} units)"
        )
    return start + column_to_char(line_text, character, encoding)


def position_at(
    text: str, index: LineIndex, offset: int, encoding: str = "utf-16"
) -> tuple[int, int]:
    """LSP (line, character) of a code-point offset, in ``encoding`` units (an offset
    inside a line end counts as the line's end)."""
    offset = max(0, min(offset, len(text)))
    line = index.line_of_offset(offset)
    start, end = index.line_span(line, text)
    return line, column_length(text[start : min(offset, end)], encoding)


def byte_point(text: str, index: LineIndex, offset: int) -> tuple[int, tuple[int, int]]:
    """UTF-8 byte offset and tree-sitter point (row, byte column) of a code-point offset.

    Tree-sitter counts rows at ``\n`` only; where a lone ``\r`` ends a line, the row
    and column are counted from the text (rare: classic Mac files)."""
    line = index.line_of_offset(offset)
    start = int(index.char_starts[line])
    prefix = text[start:offset]
    column = len(prefix) if prefix.isascii() else len(prefix.encode("utf-8"))
    byte_offset = int(index.byte_starts[line]) + column
    if not index.lone_cr:
        return byte_offset, (line, column)
    row_start = text.rfind("\n", 0, offset) + 1
    row_prefix = text[row_start:offset]
    return byte_offset, (text.count("\n", 0, offset), len(row_prefix.encode("utf-8")))


def char_of_byte(source: bytes, index: LineIndex, byte_offset: int) -> int:
    """Code-point offset of a UTF-8 byte offset (a tree-sitter node boundary)."""
    byte_offset = max(0, min(byte_offset, len(source)))
    line = index.line_of_byte(byte_offset)
    start = int(index.byte_starts[line])
    piece = source[start:byte_offset]
    return int(index.char_starts[line]) + (
        len(piece) if piece.isascii() else len(piece.decode("utf-8", errors="replace"))
    )


def end_point(start: tuple[int, int], inserted: str) -> tuple[int, int]:
    """Tree-sitter point reached after inserting ``inserted`` at ``start``."""
    newlines = inserted.count("\n")
    if newlines == 0:
        return start[0], start[1] + len(inserted.encode("utf-8"))
    last = inserted.rsplit("\n", 1)[1]
    return start[0] + newlines, len(last.encode("utf-8"))
