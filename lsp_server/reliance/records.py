"""Accepted AI suggestions (records) and the tracker that keeps them in step with edits.

A record is one accepted suggestion. Its ``spans`` are the AI-written characters still
in the file and not yet reviewed; ``reviewed`` the ones a person marked as reviewed.
Both follow every change; a record whose characters are all gone is dropped.

Files are keyed by a string the caller chooses (a workspace-relative path in the
server and the CLI). A file is *live* while an editor buffer drives it with changes;
otherwise its offsets refer to the text whose hash is ``basis_hash`` and are
re-anchored (:func:`reanchor`) when other text turns up for it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lsp_server.parsing.document import TextChange
from lsp_server.reliance import spans as sp
from lsp_server.reliance.spans import Span


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass
class AIRecord:
    """One accepted suggestion and where its characters are now."""

    id: str
    spans: list[Span]
    text: str
    model: str
    accepted_at: float
    reviewed: list[Span] = field(default_factory=list)
    reviewed_at: float | None = None
    # The text of [start, end) in the basis text; refreshed whenever the state is saved.
    anchor: str = ""
    # A tested suggestion's evidence when it was accepted (lsp_server/tested/): what it
    # passed ("examples", "tests", "label") and the ``function_hash`` it passed against.
    evidence: dict[str, Any] | None = None

    @property
    def text_hash(self) -> str:
        return content_hash(self.text)

    @property
    def all_spans(self) -> list[Span]:
        return sp.normalize([*self.spans, *self.reviewed])

    @property
    def start(self) -> int:
        return min(s[0] for s in [*self.spans, *self.reviewed])

    @property
    def end(self) -> int:
        return max(s[1] for s in [*self.spans, *self.reviewed])

    @property
    def ai_chars(self) -> int:
        return sp.size(self.spans) + sp.size(self.reviewed)

    @property
    def alive(self) -> bool:
        return bool(self.spans or self.reviewed)

    @property
    def share(self) -> float:
        """AI-written characters over the characters now between the record's ends."""
        width = self.end - self.start if self.alive else 0
        return self.ai_chars / width if width else 0.0

    @property
    def retained(self) -> float:
        """AI-written characters left over the characters accepted."""
        return self.ai_chars / len(self.text) if self.text else 0.0

    def follow(self, change: TextChange) -> None:
        self.spans = sp.follow(self.spans, change)
        self.reviewed = sp.follow(self.reviewed, change)

    def move(self, delta: int) -> None:
        self.spans = sp.shift(self.spans, delta)
        self.reviewed = sp.shift(self.reviewed, delta)


def new_record(start: int, text: str, model: str, accepted_at: float | None = None) -> AIRecord:
    return AIRecord(
        id=uuid.uuid4().hex[:16],
        spans=[(start, start + len(text))] if text else [],
        text=text,
        model=model,
        accepted_at=time.time() if accepted_at is None else accepted_at,
    )


def locate(text: str, inserted: str, near: int) -> tuple[int, int] | None:
    """Where ``inserted`` sits in ``text``, the occurrence nearest to ``near``.

    Clients insert accepted text verbatim, but some normalise line endings or drop
    trailing whitespace; those variants are tried after the exact text.
    """
    variants = [inserted]
    if "\n" in inserted and "\r\n" not in inserted:
        variants.append(inserted.replace("\n", "\r\n"))
    if inserted.rstrip() != inserted:
        variants.append(inserted.rstrip())
    for variant in variants:
        if not variant:
            continue
        found = _nearest(text, variant, near)
        if found is not None:
            return found, found + len(variant)
    return None


def _nearest(text: str, needle: str, near: int) -> int | None:
    near = max(0, min(near, len(text)))
    before = text.rfind(needle, 0, near + len(needle))
    after = text.find(needle, near)
    candidates = [i for i in (before, after) if i >= 0]
    if not candidates:
        return None
    return min(candidates, key=lambda i: abs(i - near))


@dataclass
class TrackedFile:
    records: list[AIRecord] = field(default_factory=list)
    # None while an editor buffer drives the file; else the hash of the text the
    # offsets refer to.
    basis_hash: str | None = None
    # Text of the live buffer the last time it was seen (for refining big changes).
    shadow: str | None = None


@dataclass(frozen=True)
class Detached:
    """A record that could not be re-anchored: its code changed outside the editor."""

    path: str
    record: AIRecord
    reason: str


# Removed files remembered for a rename that may follow their deletion event.
REMEMBER_REMOVED = 64


class Tracker:
    """Every record of one workspace, by file key. Not thread-safe: one owner."""

    def __init__(self) -> None:
        self.files: dict[str, TrackedFile] = {}
        # Files removed this session (a deleted-file event can come before the rename
        # that explains it); not saved.
        self.removed: dict[str, TrackedFile] = {}
        self.detached: list[Detached] = []
        self.generation = 0  # bumped on every change, for "save if dirty"

    # -- queries ----------------------------------------------------------------------
    def paths(self) -> list[str]:
        return [path for path, file in self.files.items() if file.records]

    def records(self, path: str) -> list[AIRecord]:
        file = self.files.get(path)
        return list(file.records) if file else []

    def all_records(self) -> Iterator[tuple[str, AIRecord]]:
        for path, file in self.files.items():
            for record in file.records:
                yield path, record

    def find(self, record_id: str) -> tuple[str, AIRecord] | None:
        for path, record in self.all_records():
            if record.id == record_id:
                return path, record
        return None

    def is_live(self, path: str) -> bool:
        file = self.files.get(path)
        return file is not None and file.basis_hash is None

    # -- changes ----------------------------------------------------------------------
    def add(self, path: str, record: AIRecord, text: str | None = None) -> None:
        """Add ``record``; its characters leave any older record they overlapped."""
        file = self.files.setdefault(path, TrackedFile())
        if text is not None and file.basis_hash is not None:
            self.attach(path, text)
        for other in file.records:
            for a, b in record.spans:
                other.spans = sp.subtract(other.spans, a, b)
                other.reviewed = sp.subtract(other.reviewed, a, b)
        file.records = [r for r in file.records if r.alive]
        file.records.append(record)
        if text is not None:
            file.shadow = text
        self.generation += 1

    def apply(self, path: str, changes: Iterable[TextChange], *, refine: bool = True) -> bool:
        """Follow ``changes`` (in order, each in offsets of the text before it).

        Returns whether any record moved, shrank or went away.
        """
        file = self.files.get(path)
        if file is None or not file.records:
            return False
        touched = False
        for change in changes:
            pieces = [change]
            if refine and file.shadow is not None:
                if _overlaps(file.records, change):
                    pieces = sp.refine(file.shadow, change)
                file.shadow = (
                    file.shadow[: change.start] + change.new_text + file.shadow[change.end :]
                )
            for piece in pieces:
                if _affects(file.records, piece):
                    touched = True
                    for record in file.records:
                        record.follow(piece)
        if touched:
            file.records = [r for r in file.records if r.alive]
            self.generation += 1
        return touched

    def mark_reviewed(self, path: str, start: int, end: int) -> int:
        """Mark the AI characters in ``[start, end)`` reviewed; returns how many."""
        count = 0
        now = time.time()
        for record in self.records(path):
            inside = sp.intersect(record.spans, start, end)
            if not inside:
                continue
            count += sp.size(inside)
            record.spans = sp.subtract(record.spans, start, end)
            record.reviewed = sp.normalize([*record.reviewed, *inside])
            record.reviewed_at = now
        if count:
            self.generation += 1
        return count

    def remove(self, path: str) -> None:
        removed = self.files.pop(path, None)
        if removed is not None:
            self.removed[path] = removed
            while len(self.removed) > REMEMBER_REMOVED:  # the oldest go (dicts keep order)
                del self.removed[next(iter(self.removed))]
            self.generation += 1

    def rename(self, old: str, new: str) -> list[str]:
        """Records of ``old`` (a file, or a folder: every file under it) now live at
        ``new``; returns the new keys that received records."""
        moved = []
        old, new = old.rstrip("/"), new.rstrip("/")
        for source in (self.files, self.removed):
            for path in [p for p in source if p == old or p.startswith(old + "/")]:
                target = new + path[len(old) :]
                file = source.pop(path)
                if file.records and not self.records(target):
                    self.files[target] = file
                    moved.append(target)
        if moved:
            self.generation += 1
        return moved

    # -- live buffers and re-anchoring -------------------------------------------------
    def attach(self, path: str, text: str) -> list[Detached]:
        """An editor buffer now drives ``path``: re-anchor to ``text`` and follow it."""
        lost = self.sync(path, text)
        file = self.files.get(path)
        if file is not None:
            file.basis_hash = None
            file.shadow = text
        return lost

    def close(self, path: str) -> bool:
        """The buffer of ``path`` closed: the text last seen becomes the offsets' basis.

        Returns whether a live buffer was let go of.
        """
        file = self.files.get(path)
        if file is None or file.shadow is None:
            return False
        self.detach(path, file.shadow)
        return True

    def detach(self, path: str, text: str) -> None:
        """The buffer for ``path`` closed; remember ``text`` as the offsets' basis."""
        file = self.files.get(path)
        if file is None:
            return
        file.basis_hash = content_hash(text)
        file.shadow = None
        refresh_anchors(file.records, text)

    def sync(self, path: str, text: str) -> list[Detached]:
        """Re-anchor a non-live file to ``text`` (its content now); returns lost records."""
        file = self.files.get(path)
        if file is None or file.basis_hash is None:
            return []
        digest = content_hash(text)
        if digest == file.basis_hash:
            return []
        kept: list[AIRecord] = []
        lost: list[Detached] = []
        for record in file.records:
            if reanchor(record, text):
                kept.append(record)
            else:
                lost.append(Detached(path, record, "its code changed outside the editor"))
        file.records = kept
        file.basis_hash = digest
        refresh_anchors(kept, text)
        self.detached.extend(lost)
        self.generation += 1
        return lost


def _overlaps(records: list[AIRecord], change: TextChange) -> bool:
    return any(
        change.start < record.end and change.end > record.start for record in records if record.alive
    )


def _affects(records: list[AIRecord], change: TextChange) -> bool:
    if change.start == change.end and not change.new_text:
        return False
    return any(change.start <= record.end for record in records if record.alive)


def refresh_anchors(records: Iterable[AIRecord], text: str) -> None:
    for record in records:
        if record.alive:
            record.anchor = text[record.start : record.end]


def reanchor(record: AIRecord, text: str) -> bool:
    """Move ``record`` to where its anchor text now is in ``text``; False if it is gone.

    The anchor is the text between the record's ends when its offsets were last valid;
    the occurrence nearest to the old position wins.
    """
    if not record.alive or not record.anchor:
        return False
    start, end = record.start, record.end
    if text[start:end] == record.anchor:
        return True
    found = _nearest(text, record.anchor, start)
    if found is None:
        return False
    record.move(found - start)
    return True
