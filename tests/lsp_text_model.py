"""A small reference model of LSP text synchronisation, written apart from
``lsp_server.parsing`` so that tests can compare the server's copy of a buffer with it,
and a generator of hostile random edits.

The rules it models (LSP 3.17, "Text Documents"):
- lines end at ``\\r\\n``, ``\\r`` or ``\\n``, and nowhere else (form feed, ``\\x0b``,
  ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029 are ordinary characters);
- a character past the end of its line means the line's end; a line past the last line
  means the end of the document; a range whose end comes before its start is read
  end-first;
- columns count UTF-16 code units (or UTF-8 bytes or code points where that encoding
  was negotiated); a column inside a surrogate pair means the position after the pair.
Ghostpilot's own choice, also modelled: a lone surrogate in the text is stored as U+FFFD.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from lsprotocol import types

SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
EMOJI = "\U0001f600"

# Text pieces for random edits: multi-byte and astral characters, every LSP line end,
# the characters that other line splitters break at, code, and lone surrogates.
PIECES = (
    "x", "ab", " ", "    ", "\t", "é", "日本", "€", EMOJI, "\U0001d518", "a" + EMOJI + "b",
    "\n", "\r\n", "\r", "\n\r", "\r\r\n", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85",
    "\u2028", "\u2029", "def f(x):\n    return x\n", "if y:\r\n    pass\r\n", "# c\x0c\n",
    "(", ")", "'s'", "\ud83d", "\ude00", "\udfff",
)  # fmt: skip


def units(char: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(char.encode("utf-8", "surrogatepass"))
    if encoding == "utf-32":
        return 1
    return 2 if ord(char) > 0xFFFF else 1


def _pair(match: re.Match[str]) -> str:
    high, low = match[0]
    return chr(0x10000 + ((ord(high) - 0xD800) << 10) + (ord(low) - 0xDC00))


def stored(text: str) -> str:
    """The text as the server keeps it (and as JSON decodes it): a high and a low
    surrogate side by side are one character, a lone surrogate is U+FFFD."""
    return SURROGATE.sub("\ufffd", SURROGATE_PAIR.sub(_pair, text))


def lines(text: str) -> list[str]:
    """The lines of ``text`` without their line ends."""
    return re.split(r"\r\n|\r|\n", text)


def offset_of(text: str, line: int, character: int, encoding: str = "utf-16") -> int:
    """Code-point offset of an LSP position, clamped as LSP says."""
    offset = 0
    for _ in range(line):
        ends = [found for found in (text.find("\r", offset), text.find("\n", offset)) if found >= 0]
        if not ends:
            return len(text)
        offset = min(ends)
        offset += 2 if text.startswith("\r\n", offset) else 1
    counted = 0
    while offset < len(text) and text[offset] not in "\r\n" and counted < character:
        counted += units(text[offset], encoding)
        offset += 1
    return offset


def position_of(text: str, offset: int, encoding: str = "utf-16") -> tuple[int, int]:
    """LSP position of a code-point offset that is not inside a line end."""
    before = lines(text[:offset])
    return len(before) - 1, sum(units(char, encoding) for char in before[-1])


@dataclass(frozen=True)
class Change:
    """One content change: ``range`` None replaces the whole document."""

    range: tuple[tuple[int, int], tuple[int, int]] | None
    text: str


def apply(text: str, change: Change, encoding: str = "utf-16") -> str:
    new = stored(change.text)
    if change.range is None:
        return new
    (start_line, start_char), (end_line, end_char) = change.range
    start = offset_of(text, start_line, start_char, encoding)
    end = offset_of(text, end_line, end_char, encoding)
    if end < start:
        start, end = end, start
    return text[:start] + new + text[end:]


def random_text(rng: random.Random, pieces: int) -> str:
    return "".join(rng.choice(PIECES) for _ in range(pieces))


def _position(rng: random.Random, text: str, encoding: str) -> tuple[int, int]:
    """A position in ``text``: mostly real ones, some past the end of a line or of the
    document, some inside a surrogate pair."""
    roll = rng.random()
    all_lines = lines(text)
    if roll < 0.08:
        return len(all_lines) + rng.randint(0, 3), rng.randint(0, 5)
    if roll < 0.25:
        line = rng.randrange(len(all_lines))
        length = sum(units(char, encoding) for char in all_lines[line])
        return line, length + rng.randint(1, 40)
    if roll < 0.32 and EMOJI in text and encoding == "utf-16":
        line, column = position_of(text, text.index(EMOJI), encoding)
        return line, column + 1
    offset = rng.randint(0, len(text))
    while 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
        offset -= 1  # a real position is never inside a line end
    return position_of(text, offset, encoding)


def random_change(rng: random.Random, text: str, encoding: str = "utf-16") -> Change:
    if rng.random() < 0.03:
        return Change(None, random_text(rng, rng.randint(0, 12)))
    start = _position(rng, text, encoding)
    end = start if rng.random() < 0.4 else _position(rng, text, encoding)
    if rng.random() < 0.9 and end < start:
        start, end = end, start  # now and then a reversed range stays reversed
    big = len(text) > 1500
    inserted = "" if big and rng.random() < 0.7 else random_text(rng, rng.randint(0, 3))
    return Change((start, end), inserted)


def did_change_params(uri: str, version: int, changes: list[Change]) -> types.DidChangeTextDocumentParams:
    """The didChange params that send ``changes`` (LSP positions as the model holds them)."""
    events: list[types.TextDocumentContentChangeEvent] = []
    for change in changes:
        if change.range is None:
            events.append(types.TextDocumentContentChangeWholeDocument(text=change.text))
            continue
        (sl, sc), (el, ec) = change.range
        events.append(types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=sl, character=sc),
                              end=types.Position(line=el, character=ec)),
            text=change.text,
        ))  # fmt: skip
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=events,
    )
