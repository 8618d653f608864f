"""Over-reliance diagnostics: accepted AI code that no test exercises, or whose tests fail.

LSP surface:
- ``server.acceptance_listeners``: every ``ghostpilot.accept`` records the inserted text;
- ``DocumentStore`` open/change/close listeners and ``textDocument/didSave``: records
  follow edits, open test files feed the test index;
- ``workspace/didChangeWatchedFiles`` (registered dynamically for ``**/*.py``) and
  ``workspace/didRenameFiles``: test files changed on disk, records follow renames;
- ``textDocument/publishDiagnostics``: source ``ghostpilot``, code ``untested-ai-code``,
  debounced per document and published with the version they were computed for.

The decisions are in :class:`lsp_server.reliance.session.RelianceSession`, which calls
back :meth:`RelianceDiagnostics.changed`; ``reliance_commands`` holds the code actions
and commands.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from lsp_server.engine import Suggestion
from lsp_server.features._common import to_range
from lsp_server.parsing.document import Document, TextChange, UnknownDocument
from lsp_server.reliance.session import Accepted, Notice, RelianceSession
from lsp_server.reliance.settings import RelianceSettings
from lsp_server.reliance.status import FAILING, Entry

# At run time, not under TYPE_CHECKING: pygls resolves handlers' annotations
# (typing.get_type_hints). No cycle: server.py imports features only in create_server().
from lsp_server.server import GhostpilotServer

log = logging.getLogger(__name__)

SOURCE = "ghostpilot"
CODE = "untested-ai-code"
FAILING_MESSAGE = "AI-written code fails its tests"
SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}
ATTRIBUTE = "reliance"  # where the server keeps its RelianceDiagnostics


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
        range=to_range(document, start, end),
        message=message,
        severity=severity,
        source=SOURCE,
        code=CODE,
        data={"qualname": entry.qualname, "status": entry.status, "path": entry.path},
    )


def folder_roots(folders: list[str], root_path: str | None) -> list[Path]:
    """Workspace folders (URIs) as paths; the root path if there are none."""
    roots = [Path(path) for path in (to_fs_path(uri) for uri in folders) if path]
    if not roots and root_path:
        roots.append(Path(root_path))
    return roots


def accepted(suggestion: Suggestion, model: str) -> Accepted:
    """What the session records of an accepted suggestion (``model``: if it names none)."""
    return Accepted(
        id=suggestion.id, uri=suggestion.uri, text=suggestion.text, start=suggestion.start,
        model=suggestion.model or model, accepted_at=suggestion.accepted_at or time.time(),
        evidence=suggestion.tested,
    )


class RelianceDiagnostics:
    """A server's reliance session and the diagnostics published from it."""

    def __init__(self, server: GhostpilotServer) -> None:
        self.server = server
        self.session = RelianceSession(
            server.documents,
            settings=lambda: server.settings.reliance,
            roots=self.roots,
            changed=self.changed,
            notify=self.notify,
            loop=self.loop,
        )
        # Pending publication per URI, with the document version it is for.
        self._timers: dict[str, tuple[asyncio.TimerHandle, int]] = {}
        self._published: set[str] = set()
        # The workspace folders' paths, for the folders they were made from: the session
        # asks at every keystroke (making the paths anew was a tenth of a didChange).
        self._roots: tuple[tuple[tuple[str, ...], str | None], list[Path]] | None = None

    # -- what the session needs of the server --------------------------------------------
    def roots(self) -> list[Path]:
        try:
            workspace = self.server.workspace
        except RuntimeError:  # not initialized yet
            return []
        key = (tuple(f.uri for f in workspace.folders.values()), workspace.root_path)
        if self._roots is None or self._roots[0] != key:
            self._roots = (key, folder_roots(list(key[0]), key[1]))
        return list(self._roots[1])

    def loop(self) -> asyncio.AbstractEventLoop | None:
        loop = self.server.loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
        return loop

    def notify(self, notice: Notice) -> None:
        level = types.MessageType.Warning if notice.warning else types.MessageType.Info
        if notice.key is None:
            self.server.log_message(notice.message, level)
        else:
            self.server.report_error(notice.key, notice.message, level)

    def model_name(self) -> str:
        info = self.server.worker.info
        return info.name if info is not None else str(self.server.settings.model)

    # -- publishing ----------------------------------------------------------------------
    def changed(self, uri: str) -> None:
        """The session's callback: ``uri``'s status may have changed. Publishing (after the
        debounce) sends only diagnostics that exist or replace published ones."""
        self.schedule(uri)

    def schedule(self, uri: str) -> None:
        """Publish ``uri``'s diagnostics after the debounce delay (restarted by each call)."""
        loop = self.loop()
        if loop is None:
            return
        pending = self._timers.pop(uri, None)
        if pending is not None:
            pending[0].cancel()
        try:
            version = self.server.documents.get(uri).version
        except UnknownDocument:
            return
        delay = self.session.settings.debounce_ms / 1000
        self._timers[uri] = (loop.call_later(delay, self._publish_guarded, uri, version), version)

    def edited(self, document: Document, changes: Sequence[TextChange]) -> None:
        """A document with published diagnostics changed: they are due again, even where
        the session has nothing to say (its AI code is gone)."""
        if document.uri in self._published:
            pending = self._timers.get(document.uri)
            if pending is None or pending[1] != document.version:
                self.schedule(document.uri)

    def _publish_guarded(self, uri: str, version: int) -> None:
        self._timers.pop(uri, None)
        try:
            self.publish(uri, version)
        except Exception as error:  # never let a timer callback kill the loop
            log.exception("publishing reliance diagnostics failed")
            self.server.report_error(f"reliance-publish:{error}", f"reliance diagnostics failed: {error}")

    def publish(self, uri: str, version: int | None = None) -> list[types.Diagnostic]:
        """Publish ``uri``'s diagnostics now (not if ``version`` is no longer current)."""
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

    def publish_all(self) -> None:
        for uri in self.server.documents.uris():
            self.publish(uri)

    def diagnostics(self, document: Document) -> list[types.Diagnostic]:
        settings = self.session.settings
        return [diagnostic(document, entry, settings) for entry in self.session.warnings(document)]

    def closed(self, uri: str) -> None:
        """A closed document keeps no diagnostics of ours."""
        pending = self._timers.pop(uri, None)
        if pending is not None:
            pending[0].cancel()
        if uri in self._published:
            self._published.discard(uri)
            self.server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


def attach(server: GhostpilotServer) -> RelianceDiagnostics:
    """The server's :class:`RelianceDiagnostics`, made on first use (both reliance
    feature modules share it)."""
    found = getattr(server, ATTRIBUTE, None)
    if isinstance(found, RelianceDiagnostics):
        return found
    reliance = RelianceDiagnostics(server)
    setattr(server, ATTRIBUTE, reliance)
    return reliance


async def register_watchers(ls: GhostpilotServer) -> None:
    """Ask the client to report ``**/*.py`` changes on disk (if it can register them)."""
    workspace = ls.client_capabilities.workspace if ls.client_capabilities else None
    watched = workspace.did_change_watched_files if workspace else None
    if not (watched and watched.dynamic_registration):
        return
    options = types.DidChangeWatchedFilesRegistrationOptions(watchers=[types.FileSystemWatcher(glob_pattern="**/*.py")])
    registration = types.Registration(
        id=f"ghostpilot-watch-{uuid.uuid4().hex[:8]}",
        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=options,
    )
    try:
        await ls.client_register_capability_async(types.RegistrationParams(registrations=[registration]))
    except Exception as error:  # a client that refuses still gets didSave rescans
        log.warning("registering file watchers failed: %s", error)


def setup(server: GhostpilotServer) -> None:
    reliance = attach(server)
    session = reliance.session

    def on_accept(suggestion: Suggestion) -> None:
        session.accept(accepted(suggestion, reliance.model_name()))

    async def initialized(ls: GhostpilotServer) -> None:
        await register_watchers(ls)
        session.open_workspaces()

    def did_change_watched(ls: GhostpilotServer, params: types.DidChangeWatchedFilesParams) -> None:
        session.files_changed((e.uri, e.type == types.FileChangeType.Deleted) for e in params.changes)

    def did_rename(ls: GhostpilotServer, params: types.RenameFilesParams) -> None:
        session.renamed((f.old_uri, f.new_uri) for f in params.files)

    server.acceptance_listeners.append(on_accept)
    server.documents.add_open_listener(session.opened)
    server.documents.add_listener(session.edited)
    server.documents.add_listener(reliance.edited)  # after the session's: see edited()
    server.documents.add_close_listener(session.closed)
    server.documents.add_close_listener(reliance.closed)
    server.save_listeners.append(session.saved)
    server.initialized_listeners.append(initialized)
    server.shutdown_listeners.append(session.save_all)
    server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)(did_change_watched)
    server.feature(
        types.WORKSPACE_DID_RENAME_FILES,
        types.FileOperationRegistrationOptions(
            filters=[types.FileOperationFilter(pattern=types.FileOperationPattern(glob="**"))]
        ),
    )(did_rename)
