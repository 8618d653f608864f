"""Over-reliance warning: track accepted AI code, flag what no test exercises.

LSP surface:
- ``server.acceptance_listeners``: every ``ghostpilot.accept`` records the inserted text;
- ``DocumentStore`` change/close listeners and ``textDocument/didOpen``/``didSave``:
  records follow edits, open test files feed the test index;
- ``workspace/didChangeWatchedFiles`` (registered dynamically for ``**/*.py``);
- ``textDocument/publishDiagnostics``: source ``ghostpilot``, code ``untested-ai-code``,
  debounced per document and published with the version they were computed for;
- ``textDocument/codeAction``: "Mark as reviewed", "Run tests for this function",
  "Generate a test for this function";
- commands ``ghostpilot.relianceReport``, ``ghostpilot.runTestsForAICode``,
  ``ghostpilot.markReviewed``, ``ghostpilot.generateTest``.

All decisions are in ``lsp_server/reliance/``; this module maps them onto LSP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import from_fs_path, to_fs_path

from lsp_server.parsing.document import Document, TextChange, UnknownDocument
from lsp_server.reliance import functions as fn
from lsp_server.reliance import testgen
from lsp_server.reliance.records import new_record
from lsp_server.reliance.settings import RelianceSettings, parse
from lsp_server.reliance.status import FAILING, FLAGGED, Entry
from lsp_server.reliance.testindex import is_test_file
from lsp_server.reliance.workspace import RelianceWorkspace, workspace_root_of

log = logging.getLogger(__name__)

SOURCE = "ghostpilot"
CODE = "untested-ai-code"
REPORT = "ghostpilot.relianceReport"
RUN_TESTS = "ghostpilot.runTestsForAICode"
MARK_REVIEWED = "ghostpilot.markReviewed"
GENERATE_TEST = "ghostpilot.generateTest"
FAILING_MESSAGE = "AI-written code fails its tests"
SAVE_DELAY_S = 1.0
SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}


def diagnostic(document: Document, entry: Entry, settings: RelianceSettings) -> types.Diagnostic:
    """The diagnostic for one flagged function, over its AI-written code."""
    start, end = entry.ai_range
    if entry.status == FAILING:
        message = f"{FAILING_MESSAGE}: `{entry.qualname}` ({entry.detail})"
        severity = SEVERITY[settings.failing_severity]
    else:
        message = (
            f"AI-written code in `{entry.qualname}` is not exercised by any test "
            f"({entry.share:.0%} AI-written; {entry.detail})"
        )
        severity = SEVERITY[settings.severity]
    return types.Diagnostic(
        range=_range(document, start, end),
        message=message,
        severity=severity,
        source=SOURCE,
        code=CODE,
        data={"qualname": entry.qualname, "status": entry.status, "path": entry.path},
    )


def _range(document: Document, start: int, end: int) -> types.Range:
    (sl, sc), (el, ec) = document.position_at(start), document.position_at(end)
    return types.Range(start=types.Position(line=sl, character=sc), end=types.Position(line=el, character=ec))


class Reliance:
    """The feature's state on the server: one :class:`RelianceWorkspace` per folder."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.workspaces: dict[str, RelianceWorkspace] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._save_timer: asyncio.TimerHandle | None = None
        self._published: set[str] = set()
        self._accepted: set[str] = set()
        self._settings_raw: Any = object()
        self._settings = RelianceSettings()
        self._scans: set[str] = set()

    # -- settings and workspaces --------------------------------------------------------
    @property
    def settings(self) -> RelianceSettings:
        raw = getattr(self.server.settings, "reliance", None)
        if raw != self._settings_raw:
            self._settings_raw = raw
            self._settings, problems = parse(raw)
            for problem in problems:
                self.server.report_error(
                    f"reliance-settings:{problem}", f"invalid setting: {problem}", types.MessageType.Warning
                )
            for workspace in self.workspaces.values():
                workspace.move_state(self._settings.state_location)
        return self._settings

    def roots(self) -> list[Path]:
        workspace = getattr(self.server, "workspace", None)
        roots: list[Path] = []
        if workspace is None:
            return roots
        for folder in getattr(workspace, "folders", {}).values():
            path = to_fs_path(folder.uri)
            if path:
                roots.append(Path(path))
        if not roots and getattr(workspace, "root_path", None):
            roots.append(Path(workspace.root_path))
        return roots

    def locate(self, uri: str) -> tuple[RelianceWorkspace, str] | None:
        """The workspace and key of a file URI (None for non-file URIs)."""
        path_str = to_fs_path(uri) if uri.startswith("file:") else None
        if not path_str:
            return None
        path = Path(path_str)
        root = workspace_root_of(path, self.roots())
        workspace = self._workspace(root)
        key = workspace.key(path)
        return (workspace, key) if key is not None else None

    def _workspace(self, root: Path | None) -> RelianceWorkspace:
        name = str(root) if root else ""
        workspace = self.workspaces.get(name)
        if workspace is None:
            workspace = RelianceWorkspace(root, self.settings.state_location)
            warning = workspace.load()
            if warning:
                self.server.report_error(f"reliance-state:{name}", warning, types.MessageType.Warning)
            self.workspaces[name] = workspace
            for uri in self.server.documents.uris():
                self._adopt_open(workspace, uri)
            self.scan_tests(workspace)
        return workspace

    def _adopt_open(self, workspace: RelianceWorkspace, uri: str) -> None:
        located = self._key_in(workspace, uri)
        if located is None:
            return
        try:
            document = self.server.documents.get(uri)
        except UnknownDocument:
            return
        if workspace.tracker.records(located):
            workspace.tracker.attach(located, document.text)
        workspace.index.update(located, document.text, from_editor=True)

    def _key_in(self, workspace: RelianceWorkspace, uri: str) -> str | None:
        path_str = to_fs_path(uri) if uri.startswith("file:") else None
        if not path_str:
            return None
        path = Path(path_str)
        if workspace.root is not None and workspace_root_of(path, [workspace.root]) is None:
            return None
        return workspace.key(path)

    def live_texts(self, workspace: RelianceWorkspace) -> dict[str, str]:
        out: dict[str, str] = {}
        for uri in self.server.documents.uris():
            located = self.locate(uri)
            if located and located[0] is workspace:
                try:
                    out[located[1]] = self.server.documents.get(uri).text
                except UnknownDocument:
                    continue
        return out

    def uri_of(self, workspace: RelianceWorkspace, key: str) -> str:
        return from_fs_path(str(workspace.full_path(key))) or key

    # -- the test index ------------------------------------------------------------------
    def scan_tests(self, workspace: RelianceWorkspace) -> None:
        """Rescan the workspace's test files in a thread; republish diagnostics after."""
        if workspace.root is None or str(workspace.root) in self._scans:
            return
        loop = self._loop()
        if loop is None:
            workspace.scan_tests()
            return
        self._scans.add(str(workspace.root))
        fresh = workspace.index.copy()
        root = workspace.root

        def done(future: asyncio.Future[bool]) -> None:
            self._scans.discard(str(root))
            error = future.exception()
            if error is not None:
                self.server.log_message(f"scanning test files failed: {error}", types.MessageType.Warning)
                return
            fresh.adopt_open(workspace.index)  # buffers edited during the scan win
            workspace.index = fresh
            self.schedule_all()

        future = loop.run_in_executor(None, fresh.scan, root)
        future.add_done_callback(done)

    # -- events --------------------------------------------------------------------------
    def on_accept(self, suggestion: Any) -> None:
        """Record an accepted suggestion where the client inserted it."""
        if suggestion.id in self._accepted:
            return
        try:
            document = self.server.documents.get(suggestion.uri)
        except UnknownDocument:
            self.server.report_error(
                f"reliance-accept:{suggestion.uri}",
                f"accepted a suggestion for {suggestion.uri}, which is not open; it is not tracked",
                types.MessageType.Warning,
            )
            return
        located = self.locate(suggestion.uri)
        if located is None:
            return
        workspace, key = located
        from lsp_server.reliance.records import locate as find_inserted

        span = find_inserted(document.text, suggestion.text, suggestion.start)
        if span is None:
            self.server.report_error(
                f"reliance-locate:{suggestion.id}",
                "could not find the accepted suggestion in the document; it is not tracked",
                types.MessageType.Warning,
            )
            return
        start, end = span
        self._accepted.add(suggestion.id)
        inserted = document.text[start:end]
        model = getattr(suggestion, "model", "") or self._model_name()
        accepted_at = getattr(suggestion, "accepted_at", None) or time.time()
        record = new_record(start, inserted, model, accepted_at)
        record.id = suggestion.id
        workspace.tracker.add(key, record, document.text)
        self.schedule(suggestion.uri)
        self.schedule_save()

    def _model_name(self) -> str:
        info = self.server.worker.info
        return info.name if info is not None else str(self.server.settings.model)

    def on_open(self, uri: str) -> None:
        located = self.locate(uri)
        if located is None:
            return
        workspace, key = located
        document = self.server.documents.get(uri)
        if workspace.tracker.records(key):
            lost = workspace.tracker.attach(key, document.text)
            if lost:
                self.server.log_message(
                    f"{len(lost)} AI record(s) in {key} no longer match the file and were set aside"
                )
                self.schedule_save()
            self.schedule(uri)
        if workspace.index.update(key, document.text, from_editor=True):
            self.schedule_all()

    def on_change(self, document: Document, changes: list[TextChange]) -> None:
        known = len(self.workspaces)
        located = self.locate(document.uri)
        # A workspace loaded just now attached its records to the post-change text
        # already; this change must not be applied to them again.
        adopted = len(self.workspaces) != known
        if located is None:
            return
        workspace, key = located
        tracker = workspace.tracker
        if tracker.records(key):
            if adopted:
                self.schedule_save()
            elif not tracker.is_live(key):
                tracker.attach(key, document.text)
            elif tracker.apply(key, changes):
                self.schedule_save()
            self.schedule(document.uri)
        elif document.uri in self._published:
            self.schedule(document.uri)
        if is_test_file(key) and workspace.index.update(key, document.text, from_editor=True):
            self.schedule_all()

    def on_close(self, uri: str) -> None:
        located = self.locate(uri)
        if located is None:
            return
        workspace, key = located
        file = workspace.tracker.files.get(key)
        if file is not None and file.shadow is not None:
            workspace.tracker.detach(key, file.shadow)
            self.schedule_save()
        workspace.index.closed(key)
        if workspace.root is not None and is_test_file(key):
            if workspace.index.refresh_file(workspace.root, key):
                self.schedule_all()
        self._timers.pop(uri, None)
        if uri in self._published:
            self._published.discard(uri)
            self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    def on_save(self, uri: str) -> None:
        located = self.locate(uri)
        if located is None:
            return
        workspace, _key = located
        self.scan_tests(workspace)
        self.schedule_save()

    def on_watched(self, changes: Sequence[types.FileEvent]) -> None:
        touched = False
        for event in changes:
            located = self.locate(event.uri)
            if located is None:
                continue
            workspace, key = located
            if workspace.root is None:
                continue
            if is_test_file(key):
                touched |= workspace.index.refresh_file(workspace.root, key)
            if event.type == types.FileChangeType.Deleted and not workspace.tracker.is_live(key):
                if workspace.tracker.records(key) and not workspace.full_path(key).exists():
                    workspace.tracker.remove(key)
                    self.schedule_save()
        if touched:
            self.schedule_all()

    def on_renamed(self, files: Sequence[types.FileRename]) -> None:
        """Files or folders renamed in the editor: their records move with them."""
        for rename in files:
            old, new = self.locate(rename.old_uri), self.locate(rename.new_uri)
            if old is None or new is None or old[0] is not new[0]:
                continue  # outside a workspace, or to another one: not followed
            workspace = old[0]
            for key in workspace.tracker.rename(old[1], new[1]):
                uri = self.uri_of(workspace, key)
                try:
                    document = self.server.documents.get(uri)
                except UnknownDocument:
                    continue
                workspace.tracker.attach(key, document.text)  # open under its new name
                self.schedule(uri)
            self.schedule_save()
        self.schedule_all()

    # -- diagnostics ---------------------------------------------------------------------
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        loop = getattr(self.server, "loop", None)
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
        return loop

    def schedule(self, uri: str) -> None:
        """Publish ``uri``'s diagnostics after the debounce delay (restarted by each call)."""
        loop = self._loop()
        if loop is None:
            return
        timer = self._timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        try:
            version = self.server.documents.get(uri).version
        except UnknownDocument:
            return
        delay = self.settings.debounce_ms / 1000
        self._timers[uri] = loop.call_later(delay, self._publish_guarded, uri, version)

    def schedule_all(self) -> None:
        for uri in self.server.documents.uris():
            located = self.locate(uri)
            if located and (located[0].tracker.records(located[1]) or uri in self._published):
                self.schedule(uri)

    def _publish_guarded(self, uri: str, version: int) -> None:
        self._timers.pop(uri, None)
        try:
            self.publish(uri, version)
        except Exception as error:  # never let a timer callback kill the loop
            log.exception("publishing reliance diagnostics failed")
            self.server.report_error(f"reliance-publish:{error}", f"reliance diagnostics failed: {error}")

    def publish(self, uri: str, version: int | None = None) -> list[types.Diagnostic]:
        try:
            document = self.server.documents.get(uri)
        except UnknownDocument:
            return []
        if version is not None and document.version != version:
            return []  # a newer change has its own timer
        diagnostics = self.diagnostics(document)
        if diagnostics or uri in self._published:
            self.server.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=document.version)
            )
        if diagnostics:
            self._published.add(uri)
        else:
            self._published.discard(uri)
        return diagnostics

    def entries(self, document: Document) -> tuple[RelianceWorkspace, str, list[Entry]] | None:
        located = self.locate(document.uri)
        if located is None:
            return None
        workspace, key = located
        tree = document.tree if document.parsed else None
        return workspace, key, workspace.entries(key, document.text, tree)

    def diagnostics(self, document: Document) -> list[types.Diagnostic]:
        settings = self.settings
        if not settings.enabled or document.language_id != "python":
            return []
        found = self.entries(document)
        if found is None:
            return []
        return [
            diagnostic(document, entry, settings)
            for entry in found[2]
            if entry.status in FLAGGED and entry.qualname != fn.MODULE and entry.share >= settings.min_share
        ]

    # -- saving --------------------------------------------------------------------------
    def schedule_save(self) -> None:
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
                self.server.report_error(
                    f"reliance-save:{workspace.state_file}",
                    f"could not save the reliance state to {workspace.state_file}: {error}",
                    types.MessageType.Warning,
                )

    # -- code actions and commands -------------------------------------------------------
    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        try:
            document = self.server.documents.get(uri)
        except UnknownDocument:
            return []
        found = self.entries(document)
        if found is None:
            return []
        _workspace, _key, entries = found
        start = document.offset_at(params.range.start.line, params.range.start.character, strict=False)
        end = document.offset_at(params.range.end.line, params.range.end.character, strict=False)
        ours = [
            d for d in params.context.diagnostics if d.source == SOURCE and d.code == CODE
        ]
        actions: list[types.CodeAction] = []
        for entry in entries:
            if entry.status not in FLAGGED or entry.qualname == fn.MODULE:
                continue
            a, b = entry.ai_range
            if not (a <= end and start <= b):
                continue
            matching = [d for d in ours if isinstance(d.data, dict) and d.data.get("qualname") == entry.qualname]
            args = [uri, entry.qualname]
            actions.append(self._action(f"Mark `{entry.qualname}` as reviewed", MARK_REVIEWED, args, matching))
            if entry.tests:
                actions.append(self._action(f"Run tests for `{entry.qualname}`", RUN_TESTS, args, matching))
            actions.append(
                self._action(f"Generate a test for `{entry.qualname}`", GENERATE_TEST, args, matching)
            )
        return actions

    @staticmethod
    def _action(title: str, command: str, args: list[Any], diagnostics: list[types.Diagnostic]) -> types.CodeAction:
        return types.CodeAction(
            title=title,
            kind=types.CodeActionKind.QuickFix,
            diagnostics=diagnostics or None,
            command=types.Command(title=title, command=command, arguments=args),
        )

    def document_and_entry(self, uri: str, qualname: str) -> tuple[Document, RelianceWorkspace, str, Entry | None]:
        try:
            document = self.server.documents.get(uri)
        except UnknownDocument as error:
            raise JsonRpcInvalidParams(str(error)) from None
        found = self.entries(document)
        if found is None:
            raise JsonRpcInvalidParams(f"{uri} is not a file this server tracks")
        workspace, key, entries = found
        entry = next((e for e in entries if e.qualname == qualname), None)
        return document, workspace, key, entry

    def mark_reviewed(self, uri: str, qualname: str) -> dict[str, Any]:
        document, workspace, key, entry = self.document_and_entry(uri, qualname)
        if entry is None:
            raise JsonRpcInvalidParams(f"no AI-written code is tracked in {qualname!r}")
        count = workspace.mark_reviewed(key, document.text, qualname, 0, 0)
        self.schedule_save()
        self.publish(uri)
        return {"reviewed": count, "qualname": qualname}

    def report(self, workspace_uri: str | None) -> dict[str, Any]:
        from lsp_server.reliance.status import render

        for root in self.roots():
            self._workspace(root)
        targets = list(self.workspaces.values())
        if workspace_uri:
            path = to_fs_path(workspace_uri) or workspace_uri
            targets = [w for w in targets if w.root is not None and str(w.root) == str(Path(path))]
            if not targets:
                raise JsonRpcInvalidParams(f"{workspace_uri} is not a workspace folder of this server")
        reports = [w.report(self.live_texts(w)) for w in targets if w.root is not None or w.tracker.paths()]
        return {
            "text": "\n\n".join(render(r) for r in reports),
            "reports": [r.to_json() for r in reports],
        }

    async def run_tests(self, uri: str | None, qualname: str | None) -> dict[str, Any]:
        """Run the tests of flagged AI functions (of one function, or of everything)."""
        if uri:
            located = self.locate(uri)
            if located is None:
                raise JsonRpcInvalidParams(f"{uri} is not a file this server tracks")
            jobs = [(located[0], [located[1]])]
        else:
            for root in self.roots():
                self._workspace(root)
            jobs = [(w, None) for w in self.workspaces.values() if w.root is not None]  # type: ignore[misc]
        self.save_all()
        summaries: list[str] = []
        results: list[dict[str, Any]] = []
        for workspace, keys in jobs:
            targets = workspace.targets(keys, qualname)
            if not any(t.tests for t in targets):
                summaries.append("no test references the AI-written functions")
                continue
            output = await self._run_with_progress(workspace, targets)
            summaries.append(output.message)
            results.append({"workspace": str(workspace.root), "ok": output.ok, "message": output.message,
                            "isolation": output.isolation, "counts": output.counts()})
            if output.ok is False and output.message != "the test run was cancelled":
                self.server.report_error(f"reliance-run:{output.message}", output.message,
                                         types.MessageType.Warning)
        self.schedule_save()
        for open_uri in self.server.documents.uris():
            self.publish(open_uri)
        summary = "; ".join(summaries) or "nothing to run"
        self.server.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Info, message=f"Ghostpilot tests: {summary}")
        )
        return {"summary": summary, "runs": results}

    async def _run_with_progress(self, workspace: RelianceWorkspace, targets: list[Any]) -> Any:
        cancel = threading.Event()
        token = f"ghostpilot-tests-{uuid.uuid4().hex[:8]}"
        progress = self._progress_supported()
        names = ", ".join(t.qualname for t in targets[:3]) + (" ..." if len(targets) > 3 else "")
        if progress:
            try:
                await self.server.work_done_progress.create_async(token)
                self.server.work_done_progress.begin(
                    token,
                    types.WorkDoneProgressBegin(
                        title="Ghostpilot: running tests for AI-written code",
                        message=names, cancellable=True, percentage=0,
                    ),
                )
                marker = self.server.work_done_progress.tokens.get(token)
                if marker is not None:
                    marker.add_done_callback(lambda _f: cancel.set())
            except Exception:  # a client that refuses progress still gets its run
                progress = False
        loop = asyncio.get_running_loop()
        timeout = self.settings.test_timeout_s
        future = loop.run_in_executor(
            None, lambda: workspace.execute(targets, timeout_s=timeout, cancel=cancel)
        )
        started = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=1.0)
                if done:
                    break
                if progress:
                    elapsed = time.monotonic() - started
                    self.server.work_done_progress.report(
                        token,
                        types.WorkDoneProgressReport(
                            message=f"{names} ({elapsed:.0f} s)",
                            percentage=min(99, int(100 * elapsed / timeout)),
                        ),
                    )
            output = future.result()
            workspace.record(targets, output)  # on the event loop, which owns the state
        except asyncio.CancelledError:  # $/cancelRequest of the command
            cancel.set()
            raise
        finally:
            if progress:
                self.server.work_done_progress.end(token, types.WorkDoneProgressEnd(message="done"))
        return output

    def _progress_supported(self) -> bool:
        capabilities = self.server.client_capabilities
        return bool(capabilities and capabilities.window and capabilities.window.work_done_progress)

    async def generate_test(self, uri: str, qualname: str) -> dict[str, Any]:
        """Ask the model for a pytest test of ``qualname`` and offer it as a WorkspaceEdit."""
        from lsp_server.backends.base import Cancelled, GenerationRequest, ModelUnavailable

        document, workspace, key, _entry = self.document_and_entry(uri, qualname)
        function = next((f for f in fn.functions(document.text, document.tree) if f.qualname == qualname), None)
        if function is None or workspace.root is None:
            raise JsonRpcInvalidParams(f"no function {qualname!r} in {uri} inside a workspace folder")
        test_key = testgen.choose_test_file(
            key, workspace.index.files, (workspace.root / "tests").is_dir()
        )
        test_uri = self.uri_of(workspace, test_key)
        existing = self._text_of(workspace, test_key, test_uri)
        imports = testgen.import_line(key, function.name, function.class_name)
        name = testgen.unique_test_name(function.name, existing or "")
        source = document.text[function.start : function.end]
        prompt = testgen.build_prompt(key, source, imports, name)
        request = GenerationRequest(prompt=prompt, max_tokens=160, temperature=0.0, stop=testgen.STOP)
        try:
            result = await self.server.worker.generate(request, key=f"testgen:{uri}")
        except Cancelled:
            return {"applied": False, "reason": "cancelled"}
        except ModelUnavailable as error:
            self.server.report_error(f"model:{error}", str(error))
            return {"applied": False, "reason": str(error)}
        body = testgen.clean_body(result.text)
        if body is None:
            message = f"the model wrote no usable test for {qualname}; try again or write it by hand"
            self.server.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=f"Ghostpilot: {message}"))
            return {"applied": False, "reason": message}
        edit = self._test_edit(test_uri, existing, imports, name, body)
        response = await self.server.workspace_apply_edit_async(
            types.ApplyWorkspaceEditParams(edit=edit, label=f"Ghostpilot: test for {qualname}")
        )
        return {"applied": bool(response and response.applied), "uri": test_uri, "test": name}

    def _text_of(self, workspace: RelianceWorkspace, key: str, uri: str) -> str | None:
        try:
            return self.server.documents.get(uri).text
        except UnknownDocument:
            path = workspace.full_path(key)
            return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None

    def _test_edit(self, uri: str, existing: str | None, imports: str, name: str, body: str) -> types.WorkspaceEdit:
        pieces = testgen.insertions(existing, imports, name, body)
        probe = Document(uri=uri, text=existing or "")
        edits: list[types.TextEdit | types.AnnotatedTextEdit] = []
        annotated = self._supports_annotations()
        for piece in pieces:
            position = _range(probe, piece.offset, piece.offset)
            if annotated:
                edits.append(types.AnnotatedTextEdit(range=position, new_text=piece.text, annotation_id="ghostpilot-test"))
            else:
                edits.append(types.TextEdit(range=position, new_text=piece.text))
        changes: list[Any] = []
        if existing is None:
            changes.append(types.CreateFile(uri=uri, options=types.CreateFileOptions(ignore_if_exists=True)))
        changes.append(
            types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None),
                edits=edits,
            )
        )
        annotations = None
        if annotated:
            annotations = {
                "ghostpilot-test": types.ChangeAnnotation(
                    label="AI-written test", needs_confirmation=True,
                    description="Written by the local model: review it before keeping it",
                )
            }
        return types.WorkspaceEdit(document_changes=changes, change_annotations=annotations)

    def _supports_annotations(self) -> bool:
        workspace = self.server.client_capabilities.workspace if self.server.client_capabilities else None
        edit = workspace.workspace_edit if workspace else None
        return bool(edit and edit.change_annotation_support)

    async def register_watchers(self) -> None:
        workspace = self.server.client_capabilities.workspace if self.server.client_capabilities else None
        watched = workspace.did_change_watched_files if workspace else None
        if not (watched and watched.dynamic_registration):
            return
        try:
            await self.server.client_register_capability_async(
                types.RegistrationParams(
                    registrations=[
                        types.Registration(
                            id=f"ghostpilot-watch-{uuid.uuid4().hex[:8]}",
                            method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                            register_options=types.DidChangeWatchedFilesRegistrationOptions(
                                watchers=[types.FileSystemWatcher(glob_pattern="**/*.py")]
                            ),
                        )
                    ]
                )
            )
        except Exception as error:  # a client that refuses still gets didSave rescans
            log.warning("registering file watchers failed: %s", error)


def _arguments(args: tuple[Any, ...]) -> list[Any]:
    return args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)


def setup(server: Any) -> None:
    reliance = Reliance(server)
    server.reliance = reliance
    server.acceptance_listeners.append(reliance.on_accept)
    server.documents.add_listener(reliance.on_change)
    server.documents.add_close_listener(reliance.on_close)

    def did_change_watched(ls: Any, params: types.DidChangeWatchedFilesParams) -> None:
        reliance.on_watched(params.changes)

    def did_rename(ls: Any, params: types.RenameFilesParams) -> None:
        reliance.on_renamed(params.files)

    async def initialized(ls: Any) -> None:
        await reliance.register_watchers()
        for root in reliance.roots():
            reliance._workspace(root)

    server.documents.add_open_listener(lambda document: reliance.on_open(document.uri))
    server.save_listeners.append(reliance.on_save)
    server.initialized_listeners.append(initialized)
    server.shutdown_listeners.append(reliance.save_all)
    server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)(did_change_watched)
    server.feature(
        types.WORKSPACE_DID_RENAME_FILES,
        types.FileOperationRegistrationOptions(
            filters=[types.FileOperationFilter(pattern=types.FileOperationPattern(glob="**"))]
        ),
    )(did_rename)
    server.add_code_action_provider(
        [types.CodeActionKind.QuickFix], lambda ls, params: reliance.code_actions(params)
    )

    @server.command(REPORT)
    def report(ls: Any, *args: Any) -> dict[str, Any]:
        arguments = _arguments(args)
        workspace_uri = arguments[0] if arguments and isinstance(arguments[0], str) else None
        return reliance.report(workspace_uri)

    @server.command(RUN_TESTS)
    async def run_tests(ls: Any, *args: Any) -> dict[str, Any]:
        arguments = _arguments(args)
        uri = arguments[0] if arguments and isinstance(arguments[0], str) else None
        qualname = arguments[1] if len(arguments) > 1 and isinstance(arguments[1], str) else None
        return await reliance.run_tests(uri, qualname)

    @server.command(MARK_REVIEWED)
    def mark_reviewed(ls: Any, *args: Any) -> dict[str, Any]:
        uri, qualname = _uri_and_qualname(MARK_REVIEWED, _arguments(args))
        return reliance.mark_reviewed(uri, qualname)

    @server.command(GENERATE_TEST)
    async def generate_test(ls: Any, *args: Any) -> dict[str, Any]:
        uri, qualname = _uri_and_qualname(GENERATE_TEST, _arguments(args))
        return await reliance.generate_test(uri, qualname)


def _uri_and_qualname(command: str, arguments: list[Any]) -> tuple[str, str]:
    if len(arguments) < 2 or not all(isinstance(a, str) for a in arguments[:2]):
        raise JsonRpcInvalidParams(f"{command} expects [uri, function name], got {arguments!r}")
    return arguments[0], arguments[1]
