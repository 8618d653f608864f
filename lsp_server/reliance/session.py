"""The server's over-reliance session: one :class:`RelianceWorkspace` per workspace folder.

It finds the workspace and key of a URI, follows editor events (given as plain values),
keeps the test index fresh, saves the state (debounced) and plans test runs and
generated tests. It knows nothing of LSP: it reads open documents from the
``DocumentStore`` and tells the LSP layer through callbacks:

- ``changed(uri)``: the reliance status of that open document may have changed (the
  LSP layer recomputes its diagnostics after a debounce); edits of a document without
  AI-written code do not call it;
- ``notify(notice)``: something to log, or to show the user once per key.

``lsp_server/features/reliance_diagnostics.py`` and ``reliance_commands.py`` are the
LSP edge; unit tests drive this class directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pygls.uris import from_fs_path, to_fs_path

from lsp_server.parsing.document import Document, DocumentStore, TextChange, UnknownDocument
from lsp_server.reliance import functions as fn
from lsp_server.reliance import testgen
from lsp_server.reliance.records import locate as find_inserted
from lsp_server.reliance.records import new_record
from lsp_server.reliance.runner import RunOutcome, RunOutput, Target
from lsp_server.reliance.settings import RelianceSettings
from lsp_server.reliance.status import FLAGGED, Entry, Report
from lsp_server.reliance.workspace import Effect, RelianceWorkspace, workspace_root_of

SAVE_DELAY_S = 1.0


class RelianceError(ValueError):
    """A command the session cannot serve (a URI it does not track, an unknown
    function); the LSP layer answers it as invalid params."""


@dataclass(frozen=True)
class Notice:
    """A message for the user: shown once per ``key`` (None: only logged)."""

    message: str
    key: str | None = None
    warning: bool = True


class Located(NamedTuple):
    workspace: RelianceWorkspace
    key: str  # workspace-relative posix path


@dataclass(frozen=True)
class Accepted:
    """An accepted suggestion, as the client inserted it."""

    id: str
    uri: str
    text: str
    start: int  # code-point offset where the suggestion began
    model: str
    accepted_at: float
    # A tested suggestion's evidence (features/tested.evidence_of), None for others.
    evidence: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunJob:
    """The tests to run in one workspace."""

    workspace: RelianceWorkspace
    targets: list[Target]

    @property
    def runnable(self) -> bool:
        return any(t.tests for t in self.targets)

    @property
    def names(self) -> str:
        """The functions, for a progress message."""
        return ", ".join(t.qualname for t in self.targets[:3]) + (" ..." if len(self.targets) > 3 else "")


@dataclass(frozen=True)
class RunSummary:
    """What a "run tests" command found, ready to show and to answer."""

    summary: str
    runs: list[dict[str, object]]


@dataclass(frozen=True)
class TestDraft:
    """Everything a generated test needs but the model's text."""

    __test__ = False  # not a pytest class

    qualname: str
    test_key: str
    test_uri: str
    existing: str | None  # the test file's text (None: it does not exist yet)
    imports: str
    name: str
    prompt: testgen.TestPrompt


def with_function_hash(evidence: dict[str, Any], text: str, offset: int) -> dict[str, Any]:
    """``evidence`` with the hash of the function holding ``offset`` in ``text``: the code
    it passed against (it holds while that function's source is unchanged)."""
    inside = [f for f in fn.functions(text) if f.qualname != fn.MODULE and f.start <= offset < f.end]
    if not inside:
        return dict(evidence)
    return {**evidence, "function_hash": fn.function_hash(text, inside[-1])}


def _ignore(*_args: object) -> None:
    return None


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_failure(output: RunOutput) -> str | None:
    """What to warn the user of after a run: why it failed (a cancelled run is no failure)."""
    if output.ok or output.outcome is RunOutcome.CANCELLED:
        return None
    return output.message


def summarize(jobs: Sequence[RunJob], outputs: Sequence[RunOutput | None]) -> RunSummary:
    """The answer to "run tests": one line per workspace (``None``: nothing to run there)."""
    summaries: list[str] = []
    runs: list[dict[str, object]] = []
    for job, output in zip(jobs, outputs):
        if output is None:
            summaries.append("no test references the AI-written functions")
            continue
        summaries.append(output.message)
        runs.append({"workspace": str(job.workspace.root), "ok": output.ok, "message": output.message,
                     "isolation": output.isolation, "counts": output.counts()})  # fmt: skip
    return RunSummary("; ".join(summaries) or "nothing to run", runs)


# URIs whose workspace and key locate() keeps.
LOCATED_KEPT = 4096


class RelianceSession:
    """Every workspace's records and test index, and the events that change them."""

    def __init__(
        self,
        documents: DocumentStore,
        *,
        settings: Callable[[], RelianceSettings] = RelianceSettings,
        roots: Callable[[], list[Path]] = list,
        changed: Callable[[str], None] = _ignore,
        notify: Callable[[Notice], None] = _ignore,
        loop: Callable[[], asyncio.AbstractEventLoop | None] = running_loop,
    ) -> None:
        self.documents = documents
        self.workspaces: dict[str, RelianceWorkspace] = {}
        self._settings = settings
        self._roots = roots
        self.changed = changed
        self._notify = notify
        self._loop = loop
        self._location: str | None = None
        self._accepted: set[str] = set()
        self._scans: set[str] = set()
        self._save_timer: asyncio.TimerHandle | None = None
        # locate()'s answers by URI, with the roots they were found under: every
        # keystroke asks (resolving the path costs syscalls), workspaces are never dropped.
        self._located: dict[str, tuple[tuple[Path, ...], Located | None]] = {}

    # -- settings, workspaces and keys ---------------------------------------------------
    @property
    def settings(self) -> RelianceSettings:
        """The current settings; a new state location moves every workspace's next save."""
        current = self._settings()
        if current.state_location != self._location:
            self._location = current.state_location
            for workspace in self.workspaces.values():
                workspace.move_state(current.state_location)
        return current

    def roots(self) -> list[Path]:
        return self._roots()

    def open_workspaces(self) -> list[RelianceWorkspace]:
        """Load every workspace folder's state (once); returns all loaded workspaces."""
        for root in self.roots():
            self._workspace(root)
        return list(self.workspaces.values())

    def locate(self, uri: str) -> Located | None:
        """The workspace and key of a file URI (None for other URIs); loads the workspace.
        Kept per URI while the workspace folders stay the same."""
        roots = tuple(self.roots())
        kept = self._located.get(uri)
        if kept is not None and kept[0] == roots:
            return kept[1]
        path = _path_of(uri)
        located = None
        if path is not None:
            workspace = self._workspace(workspace_root_of(path, roots))
            key = workspace.key(path)
            located = Located(workspace, key) if key is not None else None
        if len(self._located) >= LOCATED_KEPT:
            self._located.clear()
        self._located[uri] = (roots, located)
        return located

    def tracks(self, uri: str) -> bool:
        """Whether ``uri`` holds AI-written code."""
        located = self.locate(uri)
        return located is not None and located.workspace.has_records(located.key)

    def uri_of(self, workspace: RelianceWorkspace, key: str) -> str:
        return from_fs_path(str(workspace.full_path(key))) or key

    def live_texts(self, workspace: RelianceWorkspace) -> dict[str, str]:
        """The editor buffers of ``workspace``'s files, by key."""
        out: dict[str, str] = {}
        for uri in self.documents.uris():
            located = self.locate(uri)
            if located and located.workspace is workspace:
                try:
                    out[located.key] = self.documents.get(uri).text
                except UnknownDocument:
                    continue
        return out

    def _workspace(self, root: Path | None) -> RelianceWorkspace:
        name = str(root) if root else ""
        workspace = self.workspaces.get(name)
        if workspace is None:
            workspace = RelianceWorkspace(root, self.settings.state_location)
            warning = workspace.load()
            if warning:
                self._notify(Notice(warning, key=f"reliance-state:{name}"))
            self.workspaces[name] = workspace
            for uri in self.documents.uris():
                self._adopt_open(workspace, uri)
            self.scan_tests(workspace)
        return workspace

    def _adopt_open(self, workspace: RelianceWorkspace, uri: str) -> None:
        path = _path_of(uri)
        if path is None:
            return
        if workspace.root is not None and workspace_root_of(path, [workspace.root]) is None:
            return
        key = workspace.key(path)
        if key is None:
            return
        try:
            document = self.documents.get(uri)
        except UnknownDocument:
            return
        workspace.opened(key, document.text)

    # -- the test index ------------------------------------------------------------------
    def scan_tests(self, workspace: RelianceWorkspace) -> None:
        """Rescan the workspace's test files in a thread; every status may change after."""
        if workspace.root is None or str(workspace.root) in self._scans:
            return
        loop = self._loop()
        if loop is None:
            workspace.scan_tests()
            return
        self._scans.add(str(workspace.root))
        fresh = workspace.index_to_rescan()
        root = workspace.root

        def done(future: asyncio.Future[bool]) -> None:
            self._scans.discard(str(root))
            error = future.exception()
            if error is not None:
                self._notify(Notice(f"scanning test files failed: {error}"))
                return
            workspace.rescanned(fresh)
            self.changed_all()

        future = loop.run_in_executor(None, fresh.scan, root)
        future.add_done_callback(done)

    def changed_all(self) -> None:
        """Every open document may have a new status."""
        for uri in self.documents.uris():
            self.changed(uri)

    # -- editor and file events ----------------------------------------------------------
    def accept(self, suggestion: Accepted) -> None:
        """Record an accepted suggestion where the client inserted it."""
        if suggestion.id in self._accepted:
            return
        try:
            document = self.documents.get(suggestion.uri)
        except UnknownDocument:
            self._notify(Notice(
                f"accepted a suggestion for {suggestion.uri}, which is not open; it is not tracked",
                key=f"reliance-accept:{suggestion.uri}",
            ))  # fmt: skip
            return
        located = self.locate(suggestion.uri)
        if located is None:
            return
        span = find_inserted(document.text, suggestion.text, suggestion.start)
        if span is None:
            self._notify(Notice(
                "could not find the accepted suggestion in the document; it is not tracked",
                key=f"reliance-locate:{suggestion.id}",
            ))  # fmt: skip
            return
        start, end = span
        self._accepted.add(suggestion.id)
        record = new_record(start, document.text[start:end], suggestion.model, suggestion.accepted_at)
        record.id = suggestion.id
        if suggestion.evidence is not None:
            record.evidence = with_function_hash(suggestion.evidence, document.text, start)
        located.workspace.add_record(located.key, record, document.text)
        self.changed(suggestion.uri)
        self.schedule_save()

    def opened(self, document: Document) -> None:
        located = self.locate(document.uri)
        if located is None:
            return
        workspace, key = located
        tracked = workspace.has_records(key)
        effect = workspace.opened(key, document.text)
        if effect.lost:
            self._notify(Notice(
                f"{effect.lost} AI record(s) in {key} no longer match the file and were set aside",
                warning=False,
            ))  # fmt: skip
            self.schedule_save()
        if tracked:
            self.changed(document.uri)
        if effect.tests:
            self.changed_all()

    def edited(self, document: Document, changes: Sequence[TextChange]) -> None:
        known = len(self.workspaces)
        located = self.locate(document.uri)
        if located is None:
            return
        workspace, key = located
        tracked = workspace.has_records(key)
        if len(self.workspaces) != known:
            # The workspace loaded just now attached its records to the post-change
            # text already: this change must not be applied to them again.
            effect = Effect(records=tracked)
        else:
            effect = workspace.edited(key, document.text, changes)
        if tracked:
            self.changed(document.uri)
        self._after(effect)

    def closed(self, uri: str) -> None:
        located = self.locate(uri)
        if located is not None:
            self._after(located.workspace.closed(located.key))

    def saved(self, uri: str) -> None:
        located = self.locate(uri)
        if located is not None:
            self.scan_tests(located.workspace)
            self.schedule_save()

    def files_changed(self, events: Iterable[tuple[str, bool]]) -> None:
        """Files changed on disk, as (uri, deleted) pairs from a file watcher."""
        tests = False
        for uri, deleted in events:
            located = self.locate(uri)
            if located is None:
                continue
            effect = located.workspace.changed_on_disk(located.key, deleted=deleted)
            tests |= effect.tests
            if effect.records:
                self.schedule_save()
        if tests:
            self.changed_all()

    def renamed(self, renames: Iterable[tuple[str, str]]) -> None:
        """Files or folders renamed in the editor, as (old uri, new uri): records follow."""
        for old_uri, new_uri in renames:
            old, new = self.locate(old_uri), self.locate(new_uri)
            if old is None or new is None or old.workspace is not new.workspace:
                continue  # outside a workspace, or to another one: not followed
            workspace = old.workspace
            for key in workspace.renamed(old.key, new.key, self.live_texts(workspace)):
                self.changed(self.uri_of(workspace, key))
            self.schedule_save()
        self.changed_all()

    def _after(self, effect: Effect) -> None:
        if effect.records:
            self.schedule_save()
        if effect.tests:
            self.changed_all()

    # -- statuses ------------------------------------------------------------------------
    def entries(self, document: Document) -> tuple[Located, list[Entry]] | None:
        """Where ``document`` is and the status of each of its AI-written functions."""
        located = self.locate(document.uri)
        if located is None:
            return None
        tree = document.tree if document.parsed else None
        return located, located.workspace.entries(located.key, document.text, tree)

    def flagged(self, document: Document) -> list[Entry]:
        """Functions (not the module's top level) whose AI-written code is untested or failing."""
        found = self.entries(document)
        if found is None:
            return []
        return [e for e in found[1] if e.status in FLAGGED and e.qualname != fn.MODULE]

    def warnings(self, document: Document) -> list[Entry]:
        """The flagged functions that get a diagnostic under the current settings."""
        settings = self.settings
        if not settings.enabled or document.language_id != "python":
            return []
        return [e for e in self.flagged(document) if e.share >= settings.min_share]

    def _entry(self, uri: str, qualname: str) -> tuple[Document, Located, Entry | None]:
        try:
            document = self.documents.get(uri)
        except UnknownDocument as error:
            raise RelianceError(str(error)) from None
        found = self.entries(document)
        if found is None:
            raise RelianceError(f"{uri} is not a file this server tracks")
        located, entries = found
        return document, located, next((e for e in entries if e.qualname == qualname), None)

    # -- commands ------------------------------------------------------------------------
    def mark_reviewed(self, uri: str, qualname: str) -> int:
        """Mark the AI-written code of ``qualname`` in ``uri`` reviewed; returns its size."""
        document, located, entry = self._entry(uri, qualname)
        if entry is None:
            raise RelianceError(f"no AI-written code is tracked in {qualname!r}")
        count = located.workspace.mark_reviewed(located.key, document.text, qualname, 0, 0)
        self.schedule_save()
        return count

    def reports(self, workspace_path: str | None = None) -> list[Report]:
        """The report of every workspace (of one folder, if given) that has anything in it."""
        targets = self.open_workspaces()
        if workspace_path:
            wanted = str(Path(workspace_path))
            targets = [w for w in targets if w.root is not None and str(w.root) == wanted]
            if not targets:
                raise RelianceError(f"{workspace_path} is not a workspace folder of this server")
        return [w.report(self.live_texts(w)) for w in targets if w.root is not None or w.has_records()]

    def plan_run(self, uri: str | None, qualname: str | None) -> list[RunJob]:
        """The tests to run for the AI functions of ``uri`` (of every workspace if None),
        or of the one function ``qualname``. Saves the state first."""
        if uri:
            located = self.locate(uri)
            if located is None:
                raise RelianceError(f"{uri} is not a file this server tracks")
            chosen: list[tuple[RelianceWorkspace, list[str] | None]] = [(located.workspace, [located.key])]
        else:
            chosen = [(w, None) for w in self.open_workspaces() if w.root is not None]
        self.save_all()
        return [RunJob(workspace, workspace.targets(keys, qualname)) for workspace, keys in chosen]

    def finish_run(self, job: RunJob, output: RunOutput) -> None:
        """Keep what a run found (call on the thread that owns the session)."""
        job.workspace.record(job.targets, output)
        self.schedule_save()

    def draft_test(self, uri: str, qualname: str) -> TestDraft:
        """The prompt, test file and name for a generated test of ``qualname``."""
        document, located, _entry = self._entry(uri, qualname)
        workspace, key = located
        function = next((f for f in fn.functions(document.text, document.tree) if f.qualname == qualname), None)
        if function is None or workspace.root is None:
            raise RelianceError(f"no function {qualname[:200]!r} in {uri} inside a workspace folder")
        test_key = workspace.test_file_for(key)
        test_uri = self.uri_of(workspace, test_key)
        existing = self._text_of(workspace, test_key, test_uri)
        imports = testgen.import_line(key, function.name, function.class_name)
        name = testgen.unique_test_name(function.name, existing or "")
        source = document.text[function.start : function.end]
        return TestDraft(qualname, test_key, test_uri, existing, imports, name,
                         testgen.build_prompt(key, source, imports, name))  # fmt: skip

    def _text_of(self, workspace: RelianceWorkspace, key: str, uri: str) -> str | None:
        try:
            return self.documents.get(uri).text
        except UnknownDocument:
            path = workspace.full_path(key)
            return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None

    # -- saving --------------------------------------------------------------------------
    def schedule_save(self) -> None:
        """Save dirty workspaces after a short delay (at once without an event loop)."""
        loop = self._loop()
        if loop is None:
            self.save_all()
            return
        if self._save_timer is None:
            self._save_timer = loop.call_later(SAVE_DELAY_S, self.save_all)

    def save_all(self) -> None:
        self._save_timer = None
        for workspace in list(self.workspaces.values()):
            if not workspace.dirty:
                continue
            try:
                workspace.save(self.live_texts(workspace))
            except OSError as error:
                self._notify(Notice(
                    f"could not save the reliance state to {workspace.state_file}: {error}",
                    key=f"reliance-save:{workspace.state_file}",
                ))  # fmt: skip


def _path_of(uri: str) -> Path | None:
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return Path(path) if path else None
