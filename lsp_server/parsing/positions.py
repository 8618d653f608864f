"""Conversions between LSP positions (line, UTF-16 column) and offsets into a text.

LSP counts columns in UTF-16 code units; Python strings count code points and
tree-sitter counts UTF-8 bytes. Every conversion in the project goes through here.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass


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


@dataclass(frozen=True)
class LineIndex:
    """Start offsets of every line of a text, in code points and in UTF-8 bytes.

    Lines are separated by ``\\n``; a ``\\r`` before it stays part of its line, so
    CRLF files keep their columns right.
    """

    char_starts: tuple[int, ...]
    byte_starts: tuple[int, ...]
    text_length: int

    @classmethod
    def build(cls, text: str) -> LineIndex:
        char_starts = [0]
        byte_starts = [0]
        byte_pos = 0
        for line in text.split("\n")[:-1]:
            char_starts.append(char_starts[-1] + len(line) + 1)
            byte_pos += (len(line) if line.isascii() else len(line.encode("utf-8"))) + 1
            byte_starts.append(byte_pos)
        return cls(tuple(char_starts), tuple(byte_starts), len(text))

    @property
    def line_count(self) -> int:
        return len(self.char_starts)

    def line_span(self, line: int) -> tuple[int, int]:
        """Code-point span of ``line`` without its ``\\n``."""
        start = self.char_starts[line]
        end = self.char_starts[line + 1] - 1 if line + 1 < self.line_count else self.text_length
        return start, end

    def line_of_offset(self, offset: int) -> int:
        return bisect.bisect_right(self.char_starts, offset) - 1


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
    specification asks for edits.
    """
    if line < 0 or character < 0:
        raise PositionOutOfRange(f"negative position {line}:{character}")
    if line >= index.line_count:
        if strict:
            raise PositionOutOfRange(
                f"line {line} is past the end of the document ({index.line_count} lines)"
            )
        return len(text)
    start, end = index.line_span(line)
    line_text = text[start:end]
    if line_text.endswith("\r"):
        line_text = line_text[:-1]
    if strict and character > column_length(line_text, encoding):
        raise PositionOutOfRange(
            f"character {character} is past the end of line {line} "
            f"({column_length(line_text, encoding)} {encoding.upper()} units)"
        )
    return start + column_to_char(line_text, character, encoding)


def position_at(
    text: str, index: LineIndex, offset: int, encoding: str = "utf-16"
) -> tuple[int, int]:
    """LSP (line, character) of a code-point offset, in ``encoding`` units."""
    offset = max(0, min(offset, len(text)))
    line = index.line_of_offset(offset)
    start = index.char_starts[line]
    return line, column_length(text[start:offset], encoding)


def byte_point(text: str, index: LineIndex, offset: int) -> tuple[int, tuple[int, int]]:
    """UTF-8 byte offset and tree-sitter point (row, byte column) of a code-point offset."""
    line = index.line_of_offset(offset)
    start = index.char_starts[line]
    prefix = text[start:offset]
    column = len(prefix) if prefix.isascii() else len(prefix.encode("utf-8"))
    return index.byte_starts[line] + column, (line, column)


def char_of_byte(source: bytes, index: LineIndex, byte_offset: int) -> int:
    """Code-point offset of a UTF-8 byte offset (a tree-sitter node boundary)."""
    byte_offset = max(0, min(byte_offset, len(source)))
    line = bisect.bisect_right(index.byte_starts, byte_offset) - 1
    start = index.byte_starts[line]
    piece = source[start:byte_offset]
    return index.char_starts[line] + (
        len(piece) if piece.isascii() else len(piece.decode("utf-8", errors="replace"))
    )


def end_point(start: tuple[int, int], inserted: str) -> tuple[int, int]:
    """Tree-sitter point reached after inserting ``inserted`` at ``start``."""
    newlines = inserted.count("\n")
    if newlines == 0:
        return start[0], start[1] + len(inserted.encode("utf-8"))
    last = inserted.rsplit("\n", 1)[1]
    return start[0] + newlines, len(last.encode("utf-8"))
