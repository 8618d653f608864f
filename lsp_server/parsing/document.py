"""Open documents: text, line index and an incrementally reparsed tree-sitter tree.

Each content change from ``textDocument/didChange`` is applied in order. For Python
documents the old tree is told about the edit (``tree.edit``) and the new tree is
parsed with the old one, so tree-sitter reuses every unchanged subtree.

Listeners receive every change as a :class:`TextChange` in code-point offsets of the
text *before* the change; the over-reliance tracker follows its ranges with them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tree_sitter import Tree

from lsp_server.parsing import syntax
from lsp_server.parsing.positions import (
    LineIndex,
    PositionOutOfRange,
    byte_point,
    char_of_byte,
    end_point,
    offset_at,
    position_at,
)

PARSED_LANGUAGES = frozenset({"python"})


class UnknownDocument(KeyError):
    """A request named a URI that is not open."""

    def __str__(self) -> str:
        return f"document is not open: {self.args[0]}"


@dataclass(frozen=True)
class TextChange:
    """Replace ``text[start:end]`` (code points, pre-change text) with ``new_text``."""

    start: int
    end: int
    new_text: str


@dataclass(frozen=True)
class RangeEdit:
    """One LSP content change: a range (None for the whole document) and its new text."""

    range: tuple[tuple[int, int], tuple[int, int]] | None
    text: str


@dataclass
class Document:
    uri: str
    text: str
    version: int = 0
    language_id: str = "python"
    tree: Tree | None = None
    # The negotiated LSP position encoding: "utf-16" (the default), "utf-8" or "utf-32".
    encoding: str = "utf-16"
    index: LineIndex = field(init=False)
    source: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.index = LineIndex.build(self.text)
        self.source = self.text.encode("utf-8")
        if self.tree is None and self.parsed:
            self.tree = syntax.parse(self.source)

    @property
    def parsed(self) -> bool:
        return self.language_id in PARSED_LANGUAGES

    @property
    def line_count(self) -> int:
        return self.index.line_count

    def line(self, number: int) -> str:
        start, end = self.index.line_span(number)
        return self.text[start:end]

    def offset_at(self, line: int, character: int, *, strict: bool = True) -> int:
        return offset_at(
            self.text, self.index, line, character, strict=strict, encoding=self.encoding
        )

    def position_at(self, offset: int) -> tuple[int, int]:
        return position_at(self.text, self.index, offset, self.encoding)

    def byte_offset(self, offset: int) -> int:
        return byte_point(self.text, self.index, offset)[0]

    def char_offset_of_byte(self, byte_offset: int) -> int:
        return char_of_byte(self.source, self.index, byte_offset)

    def apply(self, edit: RangeEdit) -> TextChange:
        """Apply one content change; returns it in code-point offsets of the old text."""
        if edit.range is None:
            change = TextChange(0, len(self.text), edit.text)
            self.text = edit.text
            self.index = LineIndex.build(self.text)
            self.source = self.text.encode("utf-8")
            self.tree = syntax.parse(self.source) if self.parsed else None
            return change
        (start_line, start_char), (end_line, end_char) = edit.range
        start = self.offset_at(start_line, start_char, strict=False)
        end = self.offset_at(end_line, end_char, strict=False)
        if end < start:
            start, end = end, start
        start_byte, start_point = byte_point(self.text, self.index, start)
        old_end_byte, old_end_point = byte_point(self.text, self.index, end)
        new_source_piece = edit.text.encode("utf-8")
        self.text = self.text[:start] + edit.text + self.text[end:]
        self.source = self.source[:start_byte] + new_source_piece + self.source[old_end_byte:]
        self.index = LineIndex.build(self.text)
        if self.tree is not None:
            self.tree.edit(
                start_byte=start_byte,
                old_end_byte=old_end_byte,
                new_end_byte=start_byte + len(new_source_piece),
                start_point=start_point,
                old_end_point=old_end_point,
                new_end_point=end_point(start_point, edit.text),
            )
            self.tree = syntax.parse(self.source, self.tree)
        return TextChange(start, end, edit.text)


ChangeListener = Callable[[Document, list[TextChange]], None]


class DocumentStore:
    """Every open document by URI. Safe to read from worker threads via :meth:`snapshot`."""

    def __init__(self, encoding: str = "utf-16") -> None:
        self.encoding = encoding
        self._documents: dict[str, Document] = {}
        self._lock = threading.Lock()
        self._listeners: list[ChangeListener] = []
        self._close_listeners: list[Callable[[str], None]] = []
        self._open_listeners: list[Callable[[Document], None]] = []

    def add_open_listener(self, listener: Callable[[Document], None]) -> None:
        self._open_listeners.append(listener)

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def add_close_listener(self, listener: Callable[[str], None]) -> None:
        self._close_listeners.append(listener)

    def open(self, uri: str, text: str, version: int = 0, language_id: str = "python") -> Document:
        document = Document(
            uri=uri, text=text, version=version, language_id=language_id, encoding=self.encoding
        )
        with self._lock:
            self._documents[uri] = document
        for listener in self._open_listeners:
            listener(document)
        return document

    def change(self, uri: str, version: int, edits: Iterable[RangeEdit]) -> Document:
        with self._lock:
            document = self._get(uri)
            changes = [document.apply(edit) for edit in edits]
            document.version = version
        self._notify(document, changes)
        return document

    def close(self, uri: str) -> None:
        with self._lock:
            self._documents.pop(uri, None)
        for listener in self._close_listeners:
            listener(uri)

    def get(self, uri: str) -> Document:
        with self._lock:
            return self._get(uri)

    def __contains__(self, uri: str) -> bool:
        return uri in self._documents

    def uris(self) -> list[str]:
        with self._lock:
            return list(self._documents)

    def _get(self, uri: str) -> Document:
        try:
            return self._documents[uri]
        except KeyError:
            raise UnknownDocument(uri) from None

    def _notify(self, document: Document, changes: list[TextChange]) -> None:
        if not changes:
            return
        for listener in self._listeners:
            listener(document, changes)


__all__ = [
    "Document",
    "DocumentStore",
    "PositionOutOfRange",
    "RangeEdit",
    "TextChange",
    "UnknownDocument",
]
