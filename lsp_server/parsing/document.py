"""Open documents: text, line index and an incrementally reparsed tree-sitter tree.

The :class:`DocumentStore` is the server's one copy of every open buffer. Each content
change from ``textDocument/didChange`` is applied in order, with LSP's rules: lines end
at ``\n``, ``\r\n`` or ``\r``; a position past its line's end means the line's end; a
line past the last means the document's end. For Python documents the old tree is told
about each edit (``tree.edit``), and the new tree is parsed with the old one when it is
next asked for (``Document.tree``), so tree-sitter reuses every unchanged subtree and a
keystroke never waits for a parse.

Lone UTF-16 surrogates (``"\\ud83d"`` in the JSON) cannot be stored as UTF-8; each is
kept as U+FFFD, which has the same length in UTF-16, UTF-8 (3 bytes, as a WTF-8
surrogate) and code points, so every later position still lands where the client
means it. ``Document.replaced_surrogates`` counts them.

Documents larger than the store's ``max_bytes`` are kept (text and line index, so edits
still land) but not parsed; the server does not complete them.

Listeners receive every change as a :class:`TextChange` in code-point offsets of the
text *before* the change; the over-reliance tracker follows its ranges with them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

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
from lsp_server.parsing.region import KeptRegion, RegionTree, over_share, plan_region, region_tree
from lsp_server.prefix import shared_prefix

PARSED_LANGUAGES = frozenset({"python"})
# Language ids by file extension, for clients that send no languageId (Neovim without
# filetype detection, some untitled buffers).
LANGUAGES_BY_EXTENSION = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascriptreact",
    ".ts": "typescript", ".tsx": "typescriptreact", ".rs": "rust", ".go": "go",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".java": "java",
    ".rb": "ruby", ".lua": "lua", ".sh": "shellscript", ".md": "markdown",
    ".json": "json", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
}  # fmt: skip
# How many past changes each document keeps (as offsets only) for mapping ranges
# computed on an older text, such as a suggestion's.
HISTORY = 256


def language_of(uri: str, language_id: str | None) -> str:
    """The client's languageId, or one from the file extension when it sent none."""
    if language_id and language_id.strip():
        return language_id
    path = PurePosixPath(unquote(urlparse(uri).path))
    return LANGUAGES_BY_EXTENSION.get(path.suffix.lower(), "plaintext")


def clean_text(text: str) -> tuple[str, int]:
    """``text`` with every lone surrogate replaced by U+FFFD, and how many there were.

    JSON decoding leaves a surrogate in a string only where the JSON had a lone
    ``\\udXXX`` escape. A high and a low surrogate side by side (from elsewhere) are
    joined into their character, as UTF-16 reads them."""
    if text.isascii():
        return text, 0
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        cleaned = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return cleaned, cleaned.count("\ufffd") - text.count("\ufffd")
    return text, 0


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
    # The negotiated LSP position encoding: "utf-16" (the default), "utf-8" or "utf-32".
    encoding: str = "utf-16"
    # Above this many UTF-8 bytes the document is not parsed (0: no limit).
    max_bytes: int = 0
    index: LineIndex = field(init=False)
    source: bytes = field(init=False)
    # Changes applied since opening; the last HISTORY of them as (start, end, new length)
    # and the tree-sitter edit of each (None for a whole-document change).
    revision: int = field(init=False, default=0)
    replaced_surrogates: int = field(init=False, default=0)
    _history: deque[tuple[int, int, int]] = field(
        init=False, repr=False, default_factory=lambda: deque(maxlen=HISTORY)
    )
    _tree_edits: deque[dict[str, Any] | None] = field(
        init=False, repr=False, default_factory=lambda: deque(maxlen=HISTORY)
    )
    _tree: Tree | None = field(init=False, repr=False, default=None)
    # The tree was told of edits (tree.edit) that it was not parsed with yet.
    _stale: bool = field(init=False, repr=False, default=False)
    # For requests (:meth:`request_tree`): the last whole parse whose top level had no
    # ERROR node, told of every edit since, and the byte span those edits wrote (None:
    # none since).
    _base: Tree | None = field(init=False, repr=False, default=None)
    _dirty: tuple[int, int] | None = field(init=False, repr=False, default=None)
    _region_cache: tuple[int, RegionTree | None] | None = field(init=False, repr=False, default=None)
    # The last region's tree, told of every edit since: the next region's old tree.
    _kept: KeptRegion | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self.text, self.replaced_surrogates = clean_text(self.text)
        self.source = self.text.encode("utf-8")
        self.index = LineIndex.build(self.text, self.source)

    @property
    def tree(self) -> Tree | None:
        """The syntax tree of the current text; None where the document is not parsed.

        Parsed when first asked for after edits, not at every edit: even incrementally,
        tree-sitter takes most of a second on a 5 MB module, which a keystroke must not
        wait for. The edits in between are told to the old tree, so one reparse reuses
        every unchanged subtree."""
        if not self.parsed:
            return None
        if self._tree is None or self._stale:
            self._tree = syntax.parse(self.source, self._tree)
            self._stale = False
            self._take_base(self._tree, ())
        return self._tree

    def request_tree(self) -> Tree | RegionTree | None:
        """A tree of the current text for a completion request, without reparsing the
        whole file where the edits since the last good parse lie in a few top-level
        statements: those are parsed on their own (:mod:`lsp_server.parsing.region`).
        The whole tree otherwise, parsed if it is out of date."""
        if not self.parsed:
            return None
        if self._tree is not None and not self._stale and self._dirty is None:
            return self._tree.copy()  # fresh, and the base of regions
        region = self.region()
        if region is not None:
            return region
        tree = self.tree
        return tree.copy() if tree is not None else None

    def region(self) -> RegionTree | None:
        """The tree of this revision with only the edited statements parsed anew; None
        where there is none (see :func:`region_tree`). Kept for the revision, so the
        request that asks whether there is one does not parse it twice."""
        if not self.parsed or self._base is None or self._dirty is None:
            return None
        cached = self._region_cache
        if cached is not None and cached[0] == self.revision:
            return cached[1]
        found = region_tree(self._base.copy(), self.source, self._dirty, self._kept)
        self._region_cache = (self.revision, found)
        if found is not None:
            self._kept = KeptRegion(found)
        return found

    def wants_whole_parse(self) -> bool:
        """Whether parsing the whole file now would make the next requests' regions
        smaller: this revision's region holds more than one top-level statement (the
        edits since the last whole parse lie in several: the user moved on to another
        function, and nothing asked for the whole tree since) and parsed clean, so that
        the whole parse becomes the new base of regions."""
        cached = self._region_cache
        if not self.parsed or cached is None or cached[0] != self.revision or cached[1] is None:
            return False
        inner = cached[1].inner.root_node
        if inner.has_error:
            return False
        return sum(node.type != "comment" for node in inner.children) > 1

    def region_job(self) -> tuple[int, Callable[[], RegionTree | None]] | None:
        """(revision, parse) where :meth:`region` found none only because the edited
        statements are most of the file and have no earlier region to parse from (a
        module that is one large class): ``parse`` makes their region on another thread;
        hand its result to :meth:`adopt_region`. Its first parse costs what a fresh parse
        of that much text does; the regions after it are incremental. None otherwise."""
        if not self.parsed or self._base is None or self._dirty is None:
            return None
        low, high = self._dirty
        touched = [node for node in self._base.root_node.children
                   if node.start_byte <= high and node.end_byte >= low]
        if len(touched) != 1 or not over_share(touched[0].end_byte - touched[0].start_byte, self.source):
            return None  # edits across statements: the whole file's incremental parse
        if plan_region(self._base, self.source, self._dirty, max_share=None) is None:
            return None
        base, source, dirty = self._base.copy(), self.source, self._dirty
        return self.revision, lambda: region_tree(base, source, dirty, large=True)

    def adopt_region(self, found: RegionTree, revision: int) -> None:
        """Take ``found``, :meth:`region_job`'s region of the text at ``revision``: the
        region of that revision, and the old tree of the next region's parse (told of
        the edits that landed since)."""
        missing = self.revision - revision
        if not self.parsed or missing < 0 or missing > len(self._tree_edits):
            return
        kept: KeptRegion | None = KeptRegion(found)
        for edit in list(self._tree_edits)[len(self._tree_edits) - missing :]:
            kept = kept.edit(edit) if kept is not None and edit is not None else None
        self._kept = kept
        if missing == 0:
            self._region_cache = (revision, found)

    def _take_base(self, tree: Tree, later: Iterable[dict[str, Any]]) -> None:
        """Keep ``tree`` (parsed before the edits ``later``) as the base of regions when
        its top level is whole; a tree with a top-level ERROR node (an unclosed string
        that swallowed the rest of the file, say) leaves the older base in place."""
        if any(child.type == "ERROR" for child in tree.root_node.children):
            return
        base, dirty = tree.copy(), None
        for edit in later:
            base.edit(**edit)
            dirty = _widen(dirty, edit)
        self._base, self._dirty = base, dirty
        self._region_cache = None  # made from the old base: the next region is smaller

    @property
    def oversized(self) -> bool:
        return 0 < self.max_bytes < len(self.source)

    @property
    def parsed(self) -> bool:
        return self.language_id in PARSED_LANGUAGES and not self.oversized

    def parse_job(self) -> tuple[int, Callable[[], Tree]] | None:
        """(revision, parse) where the tree is out of date: ``parse`` makes the tree of
        this revision's text and may run on another thread (it works on a copy of the
        old tree); hand its result to :meth:`adopt_tree`. None when the tree is fresh."""
        if not self.parsed or (self._tree is not None and not self._stale):
            return None
        old = self._tree.copy() if self._tree is not None else None
        source = self.source
        return self.revision, lambda: syntax.parse(source, old)

    def adopt_tree(self, tree: Tree, revision: int) -> bool:
        """Take ``tree``, parsed from the text at ``revision``; edits that landed since are
        told to it (a cheap reparse then follows on first use). False where it cannot be
        used: a whole-document change came since, or the history does not reach back."""
        missing = self.revision - revision
        if not self.parsed or missing < 0 or missing > len(self._tree_edits):
            return False
        later = list(self._tree_edits)[len(self._tree_edits) - missing :]
        if any(edit is None for edit in later):
            return False
        self._take_base(tree, later)  # type: ignore[arg-type]  # copies it before the edits below
        for edit in later:
            tree.edit(**edit)  # type: ignore[arg-type]
        self._tree, self._stale = tree, bool(later)
        return True

    def sync_tree(self) -> None:
        """Drop the tree of a document that is no longer parsed (it grew too large)."""
        if not self.parsed:
            self._tree, self._stale = None, False
            self._base, self._dirty, self._kept = None, None, None

    @property
    def line_count(self) -> int:
        return self.index.line_count

    def line(self, number: int) -> str:
        """Line ``number`` without its line end."""
        start, end = self.index.line_span(number, self.text)
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

    def changes_since(self, revision: int) -> list[tuple[int, int, int]] | None:
        """(start, end, new length) of every change after ``revision``, oldest first;
        None when the history no longer reaches back that far."""
        missing = self.revision - revision
        if missing < 0 or missing > len(self._history):
            return None
        return list(self._history)[len(self._history) - missing :]

    def apply(self, edit: RangeEdit) -> TextChange:
        """Apply one content change; returns it in code-point offsets of the old text.

        Everything is computed before the document is touched, so a change that fails
        leaves the document as it was."""
        new_text, replaced = clean_text(edit.text)
        if edit.range is None:
            change = TextChange(0, len(self.text), new_text)
            source = new_text.encode("utf-8")
            index = LineIndex.build(new_text, source)
            self.text, self.source, self.index = new_text, source, index
            self._tree, self._stale = None, False
            self._base, self._dirty, self._kept = None, None, None
            tree_edit = None
        else:
            (start_line, start_char), (end_line, end_char) = edit.range
            start = self.offset_at(start_line, start_char, strict=False)
            end = self.offset_at(end_line, end_char, strict=False)
            if end < start:
                start, end = end, start
            start_byte, start_point = byte_point(self.text, self.index, start)
            old_end_byte, old_end_point = byte_point(self.text, self.index, end)
            piece = new_text.encode("utf-8")
            # One new string and one new bytes object: a keystroke in a large file costs
            # a copy of it, not three (slices of a memoryview are not copied).
            text = "".join((self.text[:start], new_text, self.text[end:]))
            whole = memoryview(self.source)
            source = b"".join((whole[:start_byte], piece, whole[old_end_byte:]))
            index = self.index.edited(
                text, start, end, new_text, start_byte, old_end_byte, len(piece)
            )
            tree_edit = {
                "start_byte": start_byte,
                "old_end_byte": old_end_byte,
                "new_end_byte": start_byte + len(piece),
                "start_point": start_point,
                "old_end_point": old_end_point,
                "new_end_point": end_point(start_point, new_text),
            }
            if self._tree is not None:
                self._tree.edit(**tree_edit)  # type: ignore[arg-type]
                self._stale = True
            if self._base is not None:
                self._base.edit(**tree_edit)  # type: ignore[arg-type]
                self._dirty = _widen(self._dirty, tree_edit)
            if self._kept is not None:
                self._kept = self._kept.edit(tree_edit)
            self.text, self.source, self.index = text, source, index
            change = TextChange(start, end, new_text)
        self.replaced_surrogates += replaced
        self.revision += 1
        self._history.append((change.start, change.end, len(new_text)))
        self._tree_edits.append(tree_edit)
        self.sync_tree()
        return change


def _widen(dirty: tuple[int, int] | None, edit: dict[str, Any]) -> tuple[int, int]:
    """The byte span ``dirty`` (of the text before ``edit``) in the text after it,
    widened to hold what ``edit`` wrote."""
    start, old_end, new_end = edit["start_byte"], edit["old_end_byte"], edit["new_end_byte"]
    if dirty is None:
        return start, new_end
    low, high = dirty
    shift = new_end - old_end
    low = low if low < start else (start if low < old_end else low + shift)
    high = high if high < start else (new_end if high < old_end else high + shift)
    return min(low, start), max(high, new_end)


def common_ends(old: str, new: str) -> tuple[int, int]:
    """How many characters ``old`` and ``new`` share at their start, and then at their
    end (never overlapping the start): what lies between is what changed."""
    limit = min(len(old), len(new))
    prefix = shared_prefix(old, new, limit)
    suffix = shared_prefix(old[::-1], new[::-1], limit - prefix)
    return prefix, suffix


def follow_range(
    start: int, end: int, changes: Iterable[tuple[int, int, int]]
) -> tuple[int, int] | None:
    """Map the code-point range ``[start, end]`` of an older text through ``changes``
    ((start, end, new length), as :meth:`Document.changes_since` gives them).

    Changes wholly before the range shift it; changes after it leave it alone; a change
    that overlaps or touches it (typing at the cursor) makes it stale: None."""
    for change_start, change_end, new_length in changes:
        if change_start == change_end and not new_length:
            continue  # an empty change changes nothing
        if change_end < start:
            shift = new_length - (change_end - change_start)
            start, end = start + shift, end + shift
        elif change_start > end:
            continue
        else:
            return None
    return start, end


ChangeListener = Callable[[Document, list[TextChange]], None]


log = logging.getLogger(__name__)


class ChangeFailed(Exception):
    """A change of a notification could not be applied: the document no longer matches
    the client's. The changes before it landed; the document is marked out of sync."""

    def __init__(self, uri: str, applied: int, total: int, cause: str) -> None:
        # The cause as text only: its traceback would keep the document alive.
        super().__init__(uri, applied, total, cause)
        self.uri, self.applied, self.total, self.cause = uri, applied, total, cause

    def __str__(self) -> str:
        return (
            f"change {self.applied + 1} of {self.total} to {self.uri} could not be applied "
            f"({self.cause}); the server's copy no longer matches the editor's"
        )


class DocumentStore:
    """Every open document by URI: the server's one copy of each buffer."""

    def __init__(self, encoding: str = "utf-16", max_bytes: int = 0) -> None:
        self.encoding = encoding
        # Documents larger than this (UTF-8 bytes) are kept but not parsed; 0: no limit.
        self.max_bytes = max_bytes
        self._documents: dict[str, Document] = {}
        # Why a document no longer matches the client's copy, by URI (until a full
        # text arrives: a whole-document change or a new didOpen).
        self._out_of_sync: dict[str, str] = {}
        self._lock = threading.Lock()
        self._listeners: list[ChangeListener] = []
        self._close_listeners: list[Callable[[str], None]] = []
        self._open_listeners: list[Callable[[Document], None]] = []
        # Told of a listener that raised (the server shows it once); the edit itself has
        # landed and the other listeners still hear of it.
        self.listener_failed: Callable[[Callable[..., Any], Exception], None] | None = None

    def add_open_listener(self, listener: Callable[[Document], None]) -> None:
        self._open_listeners.append(listener)

    def add_listener(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def add_close_listener(self, listener: Callable[[str], None]) -> None:
        self._close_listeners.append(listener)

    def open(
        self, uri: str, text: str, version: int = 0, language_id: str | None = "python"
    ) -> Document:
        document = Document(
            uri=uri,
            text=text,
            version=version,
            language_id=language_of(uri, language_id),
            encoding=self.encoding,
            max_bytes=self.max_bytes,
        )
        with self._lock:
            self._documents[uri] = document
            self._out_of_sync.pop(uri, None)
        self._call_each(self._open_listeners, document)
        return document

    def change(self, uri: str, version: int, edits: Iterable[RangeEdit]) -> Document:
        """Apply every edit in order. If one fails, the ones before it stay applied, the
        document is marked out of sync and :class:`ChangeFailed` is raised (after the
        listeners heard of what landed)."""
        edits = list(edits)
        failure: ChangeFailed | None = None
        with self._lock:
            document = self._get(uri)
            if document.max_bytes != self.max_bytes:
                document.max_bytes = self.max_bytes
                document.sync_tree()
            changes: list[TextChange] = []
            for number, edit in enumerate(edits):
                try:
                    changes.append(document.apply(edit))
                except Exception as error:
                    failure = ChangeFailed(uri, number, len(edits), f"{type(error).__name__}: {error}")
                    break
                if edit.range is None:
                    self._out_of_sync.pop(uri, None)
            document.version = version
            if failure is not None:
                self._out_of_sync[uri] = str(failure)
        self._notify(document, changes)
        if failure is not None:
            raise failure
        return document

    def mark_out_of_sync(self, uri: str, reason: str) -> bool:
        """Record that a change to ``uri`` was lost (a didChange that failed validation,
        say); False if the document is not open."""
        with self._lock:
            if uri not in self._documents:
                return False
            self._out_of_sync[uri] = reason
            return True

    def out_of_sync(self, uri: str) -> str | None:
        """Why ``uri`` no longer matches the client's copy, or None while it does."""
        return self._out_of_sync.get(uri)

    def close(self, uri: str) -> None:
        with self._lock:
            self._documents.pop(uri, None)
            self._out_of_sync.pop(uri, None)
        self._call_each(self._close_listeners, uri)

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
        if changes:
            self._call_each(self._listeners, document, changes)

    def _call_each(self, listeners: list[Callable[..., Any]], *args: Any) -> None:
        """Call every listener; one that raises is logged and reported, and the others
        still run: a failing feature never costs an edit or another feature's update."""
        for listener in list(listeners):
            try:
                listener(*args)
            except Exception as error:
                if self.listener_failed is None:
                    log.exception("document listener %r failed", listener)
                else:
                    self.listener_failed(listener, error)


__all__ = [
    "ChangeFailed",
    "Document",
    "DocumentStore",
    "PositionOutOfRange",
    "RangeEdit",
    "TextChange",
    "UnknownDocument",
    "clean_text",
    "common_ends",
    "follow_range",
    "language_of",
]
