"""A document frozen at request time: what prompt building and post-processing read."""

from __future__ import annotations

from dataclasses import dataclass

from lsp_server.parsing.document import Document
from lsp_server.parsing.positions import LineIndex, byte_point, char_of_byte
from lsp_server.parsing.region import SyntaxTree
from lsp_server.parsing.syntax import parse


@dataclass(frozen=True)
class Snapshot:
    """What a completion needs of a document, frozen at request time."""

    uri: str
    version: int
    text: str
    source: bytes
    tree: SyntaxTree
    language_id: str
    index: LineIndex

    @classmethod
    def of(cls, document: Document) -> Snapshot:
        tree = document.request_tree() or parse(document.source)
        return cls(
            document.uri, document.version, document.text, document.source, tree,
            document.language_id, document.index,
        )  # fmt: skip

    def byte_of(self, offset: int) -> int:
        """UTF-8 byte offset of a code-point offset, through the line index (no O(n) encode)."""
        return byte_point(self.text, self.index, offset)[0]

    def char_of(self, byte_offset: int) -> int:
        return char_of_byte(self.source, self.index, byte_offset)
