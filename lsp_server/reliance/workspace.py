"""One workspace's reliance state: records, test index, run results and where they live.

The server and ``ghostpilot reliance report`` both go through this class, so they
compute statuses the same way. Texts of files open in an editor are passed in
(``live``); every other file is read from disk and its records re-anchored to it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from tree_sitter import Tree

from lsp_server.parsing.document import TextChange
from lsp_server.reliance import functions as fn
from lsp_server.reliance import spans as sp
from lsp_server.reliance import state as st
from lsp_server.reliance import testgen
from lsp_server.reliance.records import AIRecord, Tracker
from lsp_server.reliance.runner import RunOutcome, RunOutput, Target, function_runs, run_tests
from lsp_server.reliance.status import (
    REVIEWED,
    UNTESTED,
    Entry,
    Report,
    decide,
    evidence_note,
    run_key,
    untested_chars,
    valid_run,
)
from lsp_server.reliance.testindex import TestIndex, is_test_file

MAX_SOURCE_BYTES = 2_000_000


class Effect(NamedTuple):
    """What an editor or file event changed in a workspace."""

    records: bool = False  # the records moved or went: the state needs saving
    tests: bool = False  # the test index changed: every open document's statuses may have
    lost: int = 0  # records set aside because their code changed outside the editor


def module_names(path: str) -> frozenset[str]:
    """Dotted names a test could import ``path`` by (``pkg/mod.py`` -> pkg.mod, mod)."""
    parts = list(PurePosixPath(path).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    names = set()
    for start in range(len(parts)):
        names.add(".".join(parts[start:]))
    return frozenset(n for n in names if n)


def reference_names(function: fn.Function, path: str) -> frozenset[str]:
    """Names whose use in a test counts as testing ``function``."""
    if function.qualname == fn.MODULE:
        return module_names(path)
    names = {function.name}
    if function.class_name and function.name.startswith("__") and function.name.endswith("__"):
        names.add(function.class_name)
    return frozenset(names)


class RelianceWorkspace:
    """Records, test index and run results of one workspace (``root`` None: no workspace)."""

    def __init__(self, root: Path | None, location: str = "xdg", state_file: Path | None = None):
        self.root = root
        self.location = location
        self.state_file = state_file or st.state_path(root, location)
        self.state = st.State(workspace=str(root) if root else "")
        self.index = TestIndex()
        self.warnings: list[str] = []
        self.saved_generation = 0
        # Serialises saves from the debounce timer and from shutdown.
        self.save_lock = threading.Lock()

    @property
    def tracker(self) -> Tracker:
        return self.state.tracker

    # -- persistence -------------------------------------------------------------------
    def load(self, *, move_aside: bool = True) -> str | None:
        """Load the saved state; returns a warning if it was unreadable (fresh start)."""
        loaded = st.load(self.state_file, move_aside=move_aside)
        self.state = loaded.state
        self.state.workspace = str(self.root) if self.root else ""
        self.saved_generation = self.tracker.generation
        if loaded.warning:
            self.warnings.append(loaded.warning)
        return loaded.warning

    def save(self, live: Mapping[str, str]) -> None:
        with self.save_lock:
            generation = self.tracker.generation
            st.save(self.state_file, self.state, dict(live))
            self.saved_generation = generation

    @property
    def dirty(self) -> bool:
        return self.tracker.generation != self.saved_generation

    def move_state(self, location: str) -> None:
        """Switch to another state location; the next save writes there."""
        if location != self.location:
            self.location = location
            self.state_file = st.state_path(self.root, location)
            self.saved_generation = -1

    # -- paths and texts ---------------------------------------------------------------
    def key(self, path: Path) -> str | None:
        """Workspace-relative posix key of ``path``, or None if it is outside."""
        if self.root is None:
            return path.as_posix()
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None

    def full_path(self, key: str) -> Path:
        return Path(key) if self.root is None else self.root / key

    def disk_text(self, key: str) -> str | None:
        try:
            data = self.full_path(key).read_bytes()
        except OSError:
            return None
        if len(data) > MAX_SOURCE_BYTES:
            return None
        return data.decode("utf-8", errors="replace")

    def text(self, key: str, live: Mapping[str, str]) -> str | None:
        """Current text of ``key``: the editor's buffer if open, else the file on disk
        (re-anchoring the file's records to it)."""
        if key in live:
            return live[key]
        text = self.disk_text(key)
        if text is None:
            return None
        if not self.tracker.is_live(key):
            self.tracker.sync(key, text)
        return text

    def scan_tests(self) -> bool:
        if self.root is None:
            return False
        return self.index.scan(self.root)

    def index_to_rescan(self) -> TestIndex:
        """A copy of the test index to rescan off the event loop (see :meth:`rescanned`)."""
        return self.index.copy()

    def rescanned(self, fresh: TestIndex) -> None:
        """Serve ``fresh`` (from :meth:`index_to_rescan`); buffers edited meanwhile win."""
        fresh.adopt_open(self.index)
        self.index = fresh

    def test_file_for(self, key: str) -> str:
        """Where a new test of ``key``'s functions goes (an existing test file if one fits)."""
        has_tests_dir = self.root is not None and (self.root / "tests").is_dir()
        return testgen.choose_test_file(key, self.index.files, has_tests_dir)

    # -- records and editor buffers ------------------------------------------------------
    def has_records(self, key: str | None = None) -> bool:
        """Whether ``key`` (any file if None) holds AI-written code."""
        return bool(self.tracker.records(key) if key is not None else self.tracker.paths())

    def add_record(self, key: str, record: AIRecord, text: str) -> None:
        """Track an accepted suggestion in the open buffer of ``key`` (``text``: its content)."""
        self.tracker.add(key, record, text)

    def opened(self, key: str, text: str) -> Effect:
        """An editor buffer with ``text`` drives ``key`` from now on."""
        lost = self.tracker.attach(key, text) if self.has_records(key) else []
        return Effect(records=bool(lost), tests=self.index.update(key, text, from_editor=True), lost=len(lost))

    def edited(self, key: str, text: str, changes: Sequence[TextChange]) -> Effect:
        """The buffer of ``key`` changed (``changes`` in order; ``text``: the result)."""
        moved = False
        if self.has_records(key):
            if not self.tracker.is_live(key):
                self.tracker.attach(key, text)
            else:
                moved = self.tracker.apply(key, changes)
        tests = is_test_file(key) and self.index.update(key, text, from_editor=True)
        return Effect(records=moved, tests=tests)

    def closed(self, key: str) -> Effect:
        """The buffer of ``key`` closed: records keep its last text, tests come from disk."""
        released = self.tracker.close(key)
        self.index.closed(key)
        tests = self.root is not None and is_test_file(key) and self.index.refresh_file(self.root, key)
        return Effect(records=released, tests=tests)

    def changed_on_disk(self, key: str, *, deleted: bool) -> Effect:
        """A file watcher saw ``key`` change (or go, if ``deleted``)."""
        if self.root is None:
            return Effect()
        tests = is_test_file(key) and self.index.refresh_file(self.root, key)
        gone = (
            deleted
            and not self.tracker.is_live(key)
            and self.has_records(key)
            and not self.full_path(key).exists()
        )
        if gone:
            self.tracker.remove(key)
        return Effect(records=gone, tests=tests)

    def renamed(self, old: str, new: str, live: Mapping[str, str]) -> list[str]:
        """Records of ``old`` (a file or a folder) move to ``new``; returns the keys that
        received records. Those open in an editor (``live``) follow their buffers."""
        moved = self.tracker.rename(old, new)
        for key in moved:
            if key in live:
                self.tracker.attach(key, live[key])
        return moved

    # -- statuses ----------------------------------------------------------------------
    def entries(self, key: str, text: str, tree: Tree | None = None) -> list[Entry]:
        """The status of every AI-written function of one file (``tree``: its parse, if known)."""
        records = self.tracker.records(key)
        if not records:
            return []
        funcs = fn.functions(text, tree)
        out: list[Entry] = []
        for share in fn.shares(text, records, funcs):
            function = share.function
            names = reference_names(function, key)
            static = self._static_tests(function, names)
            run = self.state.runs.get(run_key(key, function.qualname))
            digests = self.index.digests(run.test_digests) if run else {}
            valid = valid_run(run, fn.function_hash(text, function), digests)
            status, detail = decide(
                unreviewed_chars=share.unreviewed_chars,
                static_tests=static,
                run=run,
                run_valid=valid,
            )
            if run is not None and valid and run.message and status != "reviewed":
                detail = f"{detail}; {run.message}" if run.message not in detail else detail
            note = evidence_note(
                [r.evidence for r in records if r.id in share.record_ids and r.evidence is not None],
                fn.function_hash(text, function),
            )
            if note and status == UNTESTED:
                detail = f"{note}; no test file references it"
            elif note and status != REVIEWED:
                detail = f"{detail}; {note}"
            out.append(
                Entry(
                    path=key,
                    qualname=function.qualname,
                    status=status,
                    start_line=function.start_line,
                    end_line=function.end_line,
                    ai_chars=share.ai_chars,
                    unreviewed_chars=share.unreviewed_chars,
                    untested_chars=untested_chars(
                        status, text, share.unreviewed, function.start_line, run if valid else None
                    ),
                    share=share.share,
                    models=share.models,
                    last_accepted=share.last_accepted,
                    record_ids=share.record_ids,
                    tests=tuple(run.tests if run is not None and valid else static),
                    detail=detail,
                    ai_range=share.ai_range,
                    name_range=(function.name_start, function.name_end),
                )
            )
        return out

    def _static_tests(self, function: fn.Function, names: frozenset[str]) -> list[str]:
        if function.qualname != fn.MODULE:
            return self.index.references(names)
        return sorted(p for p, f in self.index.files.items() if f.imported_modules & names)

    def report(self, live: Mapping[str, str] | None = None) -> Report:
        live = live or {}
        entries: list[Entry] = []
        problems = list(self.warnings)
        for key in sorted(self.tracker.paths()):
            text = self.text(key, live)
            if text is None:
                problems.append(f"{key}: cannot read the file; its records are kept as they are")
                continue
            entries.extend(self.entries(key, text))
        return Report(
            workspace=str(self.root) if self.root else "(no workspace)",
            entries=entries,
            detached=len(self.tracker.detached),
            problems=problems,
        )

    # -- dynamic runs ------------------------------------------------------------------
    def targets(self, keys: Iterable[str] | None = None, qualname: str | None = None) -> list[Target]:
        """Functions to run tests for: flagged or tested AI functions of ``keys`` (all if None).

        Uses the files on disk, since that is what the tests import.
        """
        chosen = sorted(self.tracker.paths()) if keys is None else list(keys)
        out: list[Target] = []
        for key in chosen:
            text = self.disk_text(key)
            if text is None or not self.tracker.records(key):
                continue
            if not self.tracker.is_live(key):
                self.tracker.sync(key, text)
            funcs = fn.functions(text)
            for share in fn.shares(text, self.tracker.records(key), funcs):
                function = share.function
                if function.qualname == fn.MODULE:
                    continue
                if qualname is not None and function.qualname != qualname:
                    continue
                names = reference_names(function, key)
                tests = self._static_tests(function, names)
                out.append(
                    Target(
                        path=key,
                        qualname=function.qualname,
                        names=names,
                        start_line=function.start_line,
                        end_line=function.end_line,
                        ai_lines=frozenset(fn.lines_of(text, share.unreviewed or share.reviewed)),
                        function_hash=fn.function_hash(text, function),
                        tests=tuple(tests),
                    )
                )
        return out

    def run(self, targets: list[Target], **kwargs: object) -> RunOutput:
        """Run the tests of ``targets`` and keep the results (blocking)."""
        output = self.execute(targets, **kwargs)
        self.record(targets, output)
        return output

    def execute(self, targets: list[Target], **kwargs: object) -> RunOutput:
        """Run the tests of ``targets`` in the sandbox; touches no state (thread-safe)."""
        if self.root is None:
            return RunOutput(False, "tests can only run inside a workspace folder", outcome=RunOutcome.NOT_RUN)
        runnable = [t for t in targets if t.tests]
        if not runnable:
            return RunOutput(False, "no test references these functions", outcome=RunOutcome.NOT_RUN)
        return run_tests(self.root, runnable, **kwargs)  # type: ignore[arg-type]

    def record(self, targets: list[Target], output: RunOutput) -> None:
        """Keep what a run found for each target (a cancelled run records nothing)."""
        runnable = [t for t in targets if t.tests]
        if not runnable or output.outcome in (RunOutcome.CANCELLED, RunOutcome.NOT_RUN):
            return
        names = {test.nodeid: test.names for f in self.index.files.values() for test in f.tests}
        digests = {path: f.digest for path, f in self.index.files.items()}
        self.state.runs.update(function_runs(runnable, output, names, digests))
        self.tracker.generation += 1

    def mark_reviewed(self, key: str, text: str, qualname: str | None, start: int, end: int) -> int:
        """Mark the AI code of a function (by qualname) or of ``[start, end)`` reviewed."""
        if qualname:
            for function in fn.functions(text):
                if function.qualname == qualname:
                    pieces = [(function.start, function.end)]
                    for inner_start, inner_end in function.nested:
                        pieces = sp.subtract(pieces, inner_start, inner_end)
                    return sum(self.tracker.mark_reviewed(key, a, b) for a, b in pieces)
        return self.tracker.mark_reviewed(key, start, end)


def workspace_root_of(path: Path, roots: Iterable[Path]) -> Path | None:
    """The innermost of ``roots`` that contains ``path``."""
    best: Path | None = None
    for root in roots:
        try:
            path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        if best is None or len(str(root)) > len(str(best)):
            best = root
    return best

