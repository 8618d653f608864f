"""textDocument/codeAction "Generate docstring" / "Regenerate docstring", and the
``ghostpilot.generateDocstring`` command (workspace/executeCommand) that does the work.

The code action is cheap: it only asks the syntax tree whether the cursor is on a
definition's header (or its docstring) and returns the command. The command prepares
the job on the event loop (a consistent snapshot of the buffer), generates the prose on
a thread through the model worker with ``$/progress`` reports, and applies the result
with workspace/applyEdit as a versioned edit. Progress cancellation and
``$/cancelRequest`` stop the model between tokens. What is not LSP (the job, moving the
result onto a text edited meanwhile, the answer) is in ``docstrings/command.py``.

A file under the never-read rules (``neverReadGlobs``, ``.gitignore``) gets no action
and the command refuses it; the project files read for the docstring style are checked
the same way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcContentModified, JsonRpcInternalError, JsonRpcInvalidParams
from pygls.uris import to_fs_path

from lsp_server import docstrings
from lsp_server.backends.base import (
    Cancelled,
    CancelToken,
    GenerationRequest,
    GenerationResult,
    ModelUnavailable,
)
from lsp_server.backends.worker import ModelWorker
from lsp_server.docstrings import command as docstring_command
from lsp_server.features._common import command_arguments, command_position, document_at, to_range
from lsp_server.parsing.document import Document
from lsp_server.policy import may_read, path_reader
from lsp_server.runtime import prompt_budget

# At run time, not under TYPE_CHECKING: pygls resolves a command handler's annotations
# (typing.get_type_hints) to convert its arguments. No cycle: server.py imports the
# feature modules only inside create_server().
from lsp_server.server import GhostpilotServer, Progress

COMMAND = "ghostpilot.generateDocstring"
KIND = types.CodeActionKind.RefactorRewrite


class _Run:
    """One command's model calls: each goes through the worker, and ``cancel`` stops the
    one running and every one after it."""

    def __init__(self, worker: ModelWorker, key: str) -> None:
        self.worker = worker
        self.key = key
        self.stopped = threading.Event()
        self.reason = "cancelled"
        self._token: CancelToken | None = None

    def __call__(self, request: GenerationRequest) -> GenerationResult:
        if self.stopped.is_set():
            raise Cancelled(self.reason)
        future, token = self.worker.submit(
            lambda backend, token: backend.generate(request, token), key=self.key
        )
        self._token = token
        if self.stopped.is_set():
            token.cancel(self.reason)
        result: GenerationResult = future.result()
        if token.cancelled:  # superseded by a newer docstring request for this document
            raise Cancelled(token.reason)
        return result

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self.stopped.set()
        if self._token is not None:
            self._token.cancel(reason)


def _kind_wanted(only: Sequence[str] | None) -> bool:
    if not only:
        return True
    return any(KIND == kind or KIND.startswith(f"{kind}.") for kind in only)


def code_actions(ls: GhostpilotServer, params: types.CodeActionParams) -> list[types.CodeAction] | None:
    """ "Generate docstring" (or "Regenerate docstring") on a definition's header."""
    if not _kind_wanted(params.context.only):
        return None
    uri = params.text_document.uri
    try:
        document, offset = document_at(ls.documents, uri, params.range.start)
    except JsonRpcInvalidParams:
        return None  # code actions are asked for constantly; no error for a stale range
    if not document.parsed or not may_read(uri, ls.settings).allowed:
        return None
    # Asked at every cursor move: the tree a completion reads (the edited statements
    # parsed anew), not a reparse of the whole file on the event loop.
    tree = document.request_tree()
    if tree is None:
        return None
    title = docstring_command.action_title(tree, document.source, document.byte_offset(offset))
    if title is None:
        return None
    return [
        types.CodeAction(
            title=title,
            kind=KIND,
            command=types.Command(
                title=title,
                command=COMMAND,
                arguments=[
                    uri,
                    {"line": params.range.start.line, "character": params.range.start.character},
                ],
            ),
        )
    ]


def arguments(args: Sequence[Any]) -> tuple[str, types.Position]:
    """(uri, position) from ``[uri, position]`` or ``[{"uri", "position"}]``."""
    given = command_arguments(args)
    if len(given) == 1 and isinstance(given[0], dict) and "uri" in given[0]:
        given = [given[0]["uri"], given[0].get("position")]
    if len(given) != 2 or not isinstance(given[0], str):
        raise JsonRpcInvalidParams(f"{COMMAND} takes two arguments: a document URI and a position")
    return given[0], command_position(COMMAND, given[1])


def percentage(done: int, total: int) -> int:
    return round(100 * done / total) if total else 100


def _edit_for(
    document: Document, outcome: docstrings.DocstringOutcome, version: int, versioned: bool
) -> types.WorkspaceEdit:
    edit = types.TextEdit(
        range=to_range(document, outcome.edit.start, outcome.edit.end),
        new_text=outcome.edit.new_text,
    )
    if versioned:
        return types.WorkspaceEdit(
            document_changes=[
                types.TextDocumentEdit(
                    text_document=types.OptionalVersionedTextDocumentIdentifier(
                        uri=document.uri, version=version
                    ),
                    edits=[edit],
                )
            ]
        )
    return types.WorkspaceEdit(changes={document.uri: [edit]})


def _project_root(ls: GhostpilotServer, uri: str) -> str | None:
    try:
        root = ls.workspace.root_path
    except RuntimeError:  # not initialized
        root = None
    path = to_fs_path(uri) if uri.startswith("file:") else None
    if not root and path:
        root = str(docstrings.project_root(Path(path)))
    return root or None


def setup(server: GhostpilotServer) -> None:
    # Per project root and never-read rules: the docstrings of its files (for the style).
    project_cache: dict[tuple[str, tuple[str, ...], bool], list[str]] = {}

    async def project_docs(ls: GhostpilotServer, uri: str) -> list[str]:
        root = _project_root(ls, uri)
        if root is None:
            return []
        settings = ls.settings
        key = (root, settings.never_read_globs, settings.respect_gitignore)
        if key not in project_cache:
            project_cache[key] = await asyncio.to_thread(
                docstrings.project_docstrings, root, readable=path_reader(settings)
            )
        return project_cache[key]

    server.add_code_action_provider([KIND], code_actions)

    @server.command(COMMAND)
    async def on_generate(ls: GhostpilotServer, *args: Any) -> dict[str, Any]:
        return await generate_command(ls, arguments(args), project_docs)


def _readable_document(ls: GhostpilotServer, uri: str, position: types.Position) -> tuple[Document, int]:
    """The open document at ``position``, if Ghostpilot may read it at all."""
    document, offset = document_at(ls.documents, uri, position)
    verdict = may_read(uri, ls.settings)
    if not verdict.allowed:
        raise JsonRpcInvalidParams(f"Ghostpilot never reads {uri}: {verdict.reason}.")
    if document.tree is None:
        raise JsonRpcInvalidParams(
            f"Docstrings are generated for Python only, not {document.language_id}."
        )
    return document, offset


async def generate_command(
    ls: GhostpilotServer, target: tuple[str, types.Position], project_docs: Any
) -> dict[str, Any]:
    """Generate and apply the docstring for the definition at (uri, position)."""
    uri, position = target
    _readable_document(ls, uri, position)
    project = await project_docs(ls, uri) if ls.settings.docstring_style == "auto" else []
    document, offset = _readable_document(ls, uri, position)  # the newest after awaiting
    assert document.tree is not None  # checked above
    version = document.version
    budget = prompt_budget(ls.worker, ls.settings.n_ctx)
    try:
        job = docstring_command.job_at(
            document.text, document.tree, offset,
            style=ls.settings.docstring_style, project_docstrings=project,
        )  # fmt: skip
    except docstrings.DocstringError as error:
        raise JsonRpcInvalidParams(str(error)) from None

    run = _Run(ls.worker, key=f"docstring:{uri}")
    progress = Progress(
        ls, f"Ghostpilot: docstring for {job.structure.name}", kind="docstring", cancellable=True,
        on_cancel=lambda: run.cancel("cancelled from the progress bar"),
    )  # fmt: skip
    await progress.begin("reading the code", percentage=0)
    loop = asyncio.get_running_loop()

    def report(done: int, total: int, message: str) -> None:
        loop.call_soon_threadsafe(progress.report, message, percentage(done, total))

    note = ""
    try:
        ls.send_status("generating")
        try:
            outcome = await asyncio.to_thread(
                docstrings.generate, job, run, budget=budget, progress=report
            )
        except ModelUnavailable as error:
            ls.report_error(f"model:{error}", str(error))
            outcome = docstrings.generate(job, None)  # the structure still helps
            note = f"model unavailable ({error}); inserted a skeleton"
        ls.send_status("ready")
    except asyncio.CancelledError:  # $/cancelRequest
        run.cancel("request cancelled")
        progress.end("cancelled")
        raise
    except Cancelled as error:  # from the progress bar, or a newer request for this file
        progress.end("cancelled")
        ls.send_status("ready")
        return docstring_command.cancelled(job, str(error))
    except docstrings.DocstringError as error:
        progress.end(str(error))
        raise JsonRpcInternalError(str(error)) from None

    current = ls.documents.get(uri) if uri in ls.documents else None
    if current is None:
        progress.end("the document was closed")
        raise JsonRpcInvalidParams(f"{uri} was closed while its docstring was generated.")
    if current.version != version:  # edited meanwhile: place the same prose in the new text
        try:
            outcome = docstring_command.follow_edits(job, outcome, current.text)
        except docstrings.DocstringError as error:
            progress.end("the document changed")
            raise JsonRpcContentModified(  # LSP's code for it: the client may ask again
                f"The document changed while the docstring was generated: {error}"
            ) from None
        document, version = current, current.version

    capabilities = ls.client_capabilities.workspace
    versioned = bool(
        capabilities
        and capabilities.workspace_edit
        and capabilities.workspace_edit.document_changes
    )
    label = docstring_command.REGENERATE if job.regenerate else docstring_command.GENERATE
    response = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(
            edit=_edit_for(document, outcome, version, versioned), label=label
        )
    )
    applied = bool(response and response.applied)
    progress.end("done" if applied else "the editor did not apply the edit")
    return docstring_command.answer(
        job, outcome, applied=applied, failure_reason=getattr(response, "failure_reason", None), note=note
    )
