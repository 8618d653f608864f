"""Table tests for LSP position <-> offset conversions (UTF-16/UTF-8/UTF-32, CRLF)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsp_server.parsing.positions import (
    LineIndex,
    PositionOutOfRange,
    byte_point,
    column_length,
    column_to_char,
    end_point,
    offset_at,
    position_at,
    utf16_len,
    utf16_to_char,
)

EMOJI = "\U0001f600"  # astral: 2 UTF-16 units, 4 UTF-8 bytes, 1 code point


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        pytest.param("abc", "utf-16", 3, id="ascii-utf16"),
        pytest.param("abc", "utf-8", 3, id="ascii-utf8"),
        pytest.param("é", "utf-16", 1, id="bmp-utf16"),
        pytest.param("é", "utf-8", 2, id="bmp-utf8"),
        pytest.param("é", "utf-32", 1, id="bmp-utf32"),
        pytest.param(EMOJI, "utf-16", 2, id="astral-utf16"),
        pytest.param(EMOJI, "utf-8", 4, id="astral-utf8"),
        pytest.param(EMOJI, "utf-32", 1, id="astral-utf32"),
        pytest.param("a" + EMOJI + "€", "utf-16", 4, id="mixed-utf16"),
        pytest.param("a" + EMOJI + "€", "utf-8", 8, id="mixed-utf8"),
        pytest.param("", "utf-16", 0, id="empty"),
    ],
)
def test_column_length(text: str, encoding: str, expected: int) -> None:
    assert column_length(text, encoding) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", 0, id="empty"),
        pytest.param("x = 1", 5, id="ascii"),
        pytest.param(EMOJI * 3, 6, id="three-emoji"),
        pytest.param("日本", 2, id="cjk-bmp"),
    ],
)
def test_utf16_len(text: str, expected: int) -> None:
    assert utf16_len(text) == expected


@pytest.mark.parametrize(
    ("line", "column", "encoding", "expected"),
    [
        pytest.param("abc", 2, "utf-16", 2, id="ascii"),
        pytest.param("abc", 9, "utf-16", 3, id="ascii-clamped"),
        pytest.param(EMOJI + "x", 2, "utf-16", 1, id="after-emoji-utf16"),
        pytest.param(EMOJI + "x", 3, "utf-16", 2, id="end-utf16"),
        pytest.param(EMOJI + "x", 4, "utf-8", 1, id="after-emoji-utf8"),
        pytest.param(EMOJI + "x", 1, "utf-32", 1, id="after-emoji-utf32"),
        pytest.param("é=" + EMOJI, 3, "utf-8", 2, id="after-eacute-and-eq-utf8"),
        pytest.param("é=" + EMOJI, 99, "utf-8", 3, id="utf8-clamped"),
        pytest.param("é=" + EMOJI, 99, "utf-32", 3, id="utf32-clamped"),
    ],
)
def test_column_to_char(line: str, column: int, encoding: str, expected: int) -> None:
    assert column_to_char(line, column, encoding) == expected


@pytest.mark.parametrize(
    ("line", "column", "expected"),
    [
        pytest.param("a" + EMOJI + "b", 1, 1, id="before-emoji"),
        pytest.param("a" + EMOJI + "b", 3, 2, id="after-emoji"),
        pytest.param("a" + EMOJI + "b", 4, 3, id="line-end"),
        pytest.param("a" + EMOJI + "b", 40, 3, id="clamped"),
        # A column in the middle of a surrogate pair lands after the character.
        pytest.param("a" + EMOJI + "b", 2, 2, id="mid-surrogate-pair"),
    ],
)
def test_utf16_to_char(line: str, column: int, expected: int) -> None:
    assert utf16_to_char(line, column) == expected


@pytest.mark.parametrize(
    ("text", "char_starts", "byte_starts"),
    [
        pytest.param("", (0,), (0,), id="empty"),
        pytest.param("ab\ncd", (0, 3), (0, 3), id="two-lines"),
        pytest.param("ab\r\ncd\r\n", (0, 4, 8), (0, 4, 8), id="crlf-trailing"),
        pytest.param(EMOJI + "\né\n", (0, 2, 4), (0, 5, 8), id="non-ascii-bytes"),
        pytest.param("a\rb\r", (0, 2, 4), (0, 2, 4), id="lone-cr"),
        pytest.param("a\r\rb", (0, 2, 3), (0, 2, 3), id="two-lone-cr"),
        pytest.param("a\n\rb\r\nc", (0, 2, 3, 6), (0, 2, 3, 6), id="lf-cr-crlf"),
        pytest.param("é\rx\r\n", (0, 2, 5), (0, 3, 6), id="lone-cr-and-crlf-bytes"),
        pytest.param(
            "a\x0cb\x0bc\x1cd\x1de\x1ef\x85g\u2028h\u2029i",
            (0,),
            (0,),
            id="not-lsp-line-ends",
        ),
    ],
)
def test_line_index(text: str, char_starts: tuple[int, ...], byte_starts: tuple[int, ...]) -> None:
    index = LineIndex.build(text)
    assert tuple(index.char_starts) == char_starts
    assert tuple(index.byte_starts) == byte_starts
    assert index.line_count == len(char_starts)
    assert (index.text_length, index.byte_length) == (len(text), len(text.encode("utf-8")))


@pytest.mark.parametrize(
    ("text", "line", "character", "expected"),
    [
        pytest.param("a = 1\rb = 2\r", 1, 1, 7, id="after-lone-cr"),
        pytest.param("a = 1\rb = 2\r", 0, 9, 5, id="clamped-before-lone-cr"),
        pytest.param("a = 1\rb = 2\r", 2, 0, 12, id="line-after-trailing-cr"),
        pytest.param("ab\x0ccd\ne", 0, 4, 4, id="form-feed-in-line"),
        pytest.param("ab\u2028cd\ne", 0, 9, 5, id="line-separator-in-line"),
        pytest.param("ab\x85\ncd", 1, 1, 5, id="nel-in-line"),
    ],
)
def test_offset_at_lsp_line_ends(text: str, line: int, character: int, expected: int) -> None:
    assert offset_at(text, LineIndex.build(text), line, character, strict=False) == expected


def _reference_starts(text: str) -> list[int]:
    starts = [0]
    for at, char in enumerate(text):
        if char == "\n" or (char == "\r" and text[at + 1 : at + 2] != "\n"):
            starts.append(at + 1)
    return starts


PIECES = ["a", "é", EMOJI, "\n", "\r", "\r\n", "\x0c", "\u2028", "\x85", "xyz"]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.data(),
)
def test_edited_index_equals_a_fresh_one(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    inserted = data.draw(st.lists(st.sampled_from(PIECES), max_size=4).map("".join))
    old = LineIndex.build(text)
    new_text = text[:start] + inserted + text[end:]
    start_byte = len(text[:start].encode("utf-8"))
    end_byte = len(text[:end].encode("utf-8"))
    edited = old.edited(
        new_text, start, end, inserted, start_byte, end_byte, len(inserted.encode("utf-8"))
    )
    fresh = LineIndex.build(new_text)
    assert list(edited.char_starts) == _reference_starts(new_text) == list(fresh.char_starts)
    assert list(edited.byte_starts) == list(fresh.byte_starts)
    assert (edited.text_length, edited.byte_length) == (fresh.text_length, fresh.byte_length)
    # Tree-sitter points count rows at "\n" only, whatever the LSP lines are.
    for offset in range(len(new_text) + 1):
        prefix = new_text[:offset]
        row_start = prefix.rfind("\n") + 1
        expected = (
            len(prefix.encode("utf-8")),
            (prefix.count("\n"), len(prefix[row_start:].encode("utf-8"))),
        )
        assert byte_point(new_text, edited, offset) == expected


TEXT = "a = 1\r\n" + EMOJI + "b = 2\r\n\nlast"
# code points:  "a = 1\r\n" -> 0..6, line 1 starts at 7: EMOJI(7) b(8) ' '(9) '='(10) ' '(11)
# '2'(12) '\r'(13) '\n'(14); line 2 = "" at 15; line 3 "last" at 16..19, length 20.


@pytest.mark.parametrize(
    ("line", "character", "encoding", "expected"),
    [
        pytest.param(0, 0, "utf-16", 0, id="origin"),
        pytest.param(0, 5, "utf-16", 5, id="crlf-line-end-before-cr"),
        pytest.param(1, 0, "utf-16", 7, id="line1-start"),
        pytest.param(1, 2, "utf-16", 8, id="after-emoji-utf16"),
        pytest.param(1, 4, "utf-8", 8, id="after-emoji-utf8"),
        pytest.param(1, 1, "utf-32", 8, id="after-emoji-utf32"),
        pytest.param(1, 7, "utf-16", 13, id="line1-end"),
        pytest.param(1, 3, "utf-32", 10, id="utf32-mid-line"),
        pytest.param(1, 6, "utf-32", 13, id="utf32-line-end"),
        pytest.param(2, 0, "utf-16", 15, id="empty-line"),
        pytest.param(3, 4, "utf-16", 20, id="document-end"),
    ],
)
def test_offset_at_strict(line: int, character: int, encoding: str, expected: int) -> None:
    index = LineIndex.build(TEXT)
    assert offset_at(TEXT, index, line, character, strict=True, encoding=encoding) == expected


@pytest.mark.parametrize(
    ("line", "character", "encoding", "message"),
    [
        pytest.param(0, 6, "utf-16", "character 6 is past the end of line 0", id="into-cr"),
        pytest.param(1, 8, "utf-16", "character 8 is past the end of line 1", id="past-line"),
        pytest.param(
            1, 7, "utf-32", "character 7 is past the end of line 1 (6 UTF-32", id="utf32-past"
        ),
        pytest.param(
            4, 0, "utf-16", "line 4 is past the end of the document (4 lines)", id="line-past"
        ),
        pytest.param(-1, 0, "utf-16", "negative position -1:0", id="negative-line"),
        pytest.param(0, -2, "utf-16", "negative position 0:-2", id="negative-char"),
    ],
)
def test_offset_at_strict_errors(line: int, character: int, encoding: str, message: str) -> None:
    index = LineIndex.build(TEXT)
    with pytest.raises(PositionOutOfRange) as info:
        offset_at(TEXT, index, line, character, strict=True, encoding=encoding)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("line", "character", "expected"),
    [
        pytest.param(0, 6, 5, id="cr-clamped-to-before-cr"),
        pytest.param(0, 99, 5, id="far-past-line"),
        pytest.param(1, 99, 13, id="emoji-line-clamped"),
        pytest.param(9, 0, 20, id="past-document-to-end"),
    ],
)
def test_offset_at_clamps(line: int, character: int, expected: int) -> None:
    index = LineIndex.build(TEXT)
    assert offset_at(TEXT, index, line, character, strict=False) == expected


def test_offset_at_negative_raises_even_when_clamping() -> None:
    index = LineIndex.build(TEXT)
    with pytest.raises(PositionOutOfRange):
        offset_at(TEXT, index, -1, 0, strict=False)


@pytest.mark.parametrize(
    ("offset", "encoding", "expected"),
    [
        pytest.param(0, "utf-16", (0, 0), id="origin"),
        pytest.param(5, "utf-16", (0, 5), id="before-cr"),
        pytest.param(8, "utf-16", (1, 2), id="after-emoji-utf16"),
        pytest.param(8, "utf-8", (1, 4), id="after-emoji-utf8"),
        pytest.param(8, "utf-32", (1, 1), id="after-emoji-utf32"),
        pytest.param(15, "utf-16", (2, 0), id="empty-line"),
        pytest.param(20, "utf-16", (3, 4), id="end"),
        pytest.param(999, "utf-16", (3, 4), id="past-end-clamped"),
        pytest.param(-5, "utf-16", (0, 0), id="negative-clamped"),
    ],
)
def test_position_at(offset: int, encoding: str, expected: tuple[int, int]) -> None:
    assert position_at(TEXT, LineIndex.build(TEXT), offset, encoding) == expected


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        pytest.param("ab\ncd", 4, (4, (1, 1)), id="ascii"),
        pytest.param(EMOJI + "x\n" + "é" + "y", 4, (8, (1, 2)), id="astral-then-bmp"),
        pytest.param("é\r\nz", 3, (4, (1, 0)), id="crlf"),
    ],
)
def test_byte_point(text: str, offset: int, expected: tuple[int, tuple[int, int]]) -> None:
    assert byte_point(text, LineIndex.build(text), offset) == expected


@pytest.mark.parametrize(
    ("start", "inserted", "expected"),
    [
        pytest.param((2, 3), "", (2, 3), id="nothing"),
        pytest.param((2, 3), "ab", (2, 5), id="same-line"),
        pytest.param((2, 3), EMOJI, (2, 7), id="same-line-bytes"),
        pytest.param((2, 3), "x\ny\n", (4, 0), id="ends-with-newline"),
        pytest.param((0, 9), "a\né" + EMOJI, (1, 6), id="multi-line-bytes"),
    ],
)
def test_end_point(start: tuple[int, int], inserted: str, expected: tuple[int, int]) -> None:
    assert end_point(start, inserted) == expected


@pytest.mark.parametrize(
    ("text", "byte_offset", "expected"),
    [
        pytest.param("abc\ndef", 5, 5, id="ascii-second-line"),
        pytest.param("é\nx", 2, 1, id="after-two-byte-char"),
        pytest.param("a😀b\nc", 5, 2, id="after-emoji"),
        pytest.param("a😀b\nc😀", 12, 6, id="end-of-last-line"),
        pytest.param("ab", 99, 2, id="clamped"),
    ],
)
def test_char_of_byte(text: str, byte_offset: int, expected: int) -> None:
    from lsp_server.parsing.positions import LineIndex, char_of_byte

    assert char_of_byte(text.encode("utf-8"), LineIndex.build(text), byte_offset) == expected
