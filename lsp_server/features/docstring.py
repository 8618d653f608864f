"""textDocument/codeAction "Generate docstring" / "Regenerate docstring", and the
``ghostpilot.generateDocstring`` command (workspace/executeCommand) that does the work.

The code action is cheap: it only asks the syntax tree whether the cursor is on a
definition's header (or its docstring) and returns the command. The command prepares
the job on the event loop (a consistent snapshot of the buffer), generates the prose on
a thread through the model worker with ``$/progress`` reports, and applies the result
with workspace/applyEdit as a versioned edit. Progress cancellation and
``$/cancelRequest`` stop the model between tokens.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.uris import to_fs_path
from tree_sitter import Node

from lsp_server import docstrings
from lsp_server.backends.base import (
    Cancelled,
    CancelToken,
    GenerationRequest,
    GenerationResult,
    ModelUnavailable,
)
from lsp_server.docstrings.generation import skeleton
from lsp_server.docstrings.structure import definition_at
from lsp_server.docstrings.styles import slot_keys
from lsp_server.features._common import document_at, to_range
from lsp_server.runtime import prompt_budget

COMMAND = "ghostpilot.generateDocstring"
KIND = types.CodeActionKind.RefactorRewrite


class _Run:
    """One command's model calls: each goes through the worker, and ``cancel`` stops the
    one running and every one after it."""

    def __init__(self, worker: Any, key: str) -> None:
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


def code_actions(ls: Any, params: types.CodeActionParams) -> list[types.CodeAction] | None:
    """ "Generate docstring" (or "Regenerate docstring") on a definition's header."""
    if not _kind_wanted(params.context.only):
        return None
    uri = params.text_document.uri
    try:
        document, offset = document_at(ls.documents, uri, params.range.start)
    except JsonRpcInvalidParams:
        return None  # code actions are asked for constantly; no error for a stale range
    if document.tree is None or not document.text.strip():
        return None
    try:
        definition = definition_at(
            document.tree, document.source, document.byte_offset(offset), header_only=True
        )
    except docstrings.DocstringError:
        return None
    title = "Regenerate docstring" if definition.existing_docstring else "Generate docstring"
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


def _position(value: Any) -> types.Position:
    if isinstance(value, types.Position):
        return value
    if isinstance(value, dict) and {"line", "character"} <= value.keys():
        line, character = value["line"], value["character"]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        line, character = value
    else:
        raise JsonRpcInvalidParams(
            f"{COMMAND}: position must be {{line, character}}, got {value!r}"
        )
    if not isinstance(line, int) or not isinstance(character, int):
        raise JsonRpcInvalidParams(f"{COMMAND}: line and character must be integers")
    return types.Position(line=line, character=character)


def _arguments(args: Sequence[Any]) -> tuple[str, types.Position]:
    if len(args) == 1 and isinstance(args[0], dict) and "uri" in args[0]:
        args = (args[0]["uri"], args[0].get("position"))
    if len(args) != 2 or not isinstance(args[0], str):
        raise JsonRpcInvalidParams(f"{COMMAND} takes two arguments: a document URI and a position")
    return args[0], _position(args[1])


class _Progress:
    """Server-initiated $/progress, where the client supports it; cancellable."""

    def __init__(self, ls: Any, title: str, on_cancel: Any) -> None:
        self.ls = ls
        self.title = title
        self.on_cancel = on_cancel
        self.token = f"ghostpilot-docstring-{uuid.uuid4().hex[:8]}"
        window = ls.client_capabilities.window
        self.enabled = bool(window and window.work_done_progress)

    async def begin(self, message: str) -> None:
        if not self.enabled:
            return
        try:
            await self.ls.work_done_progress.create_async(self.token)
        except Exception:  # noqa: BLE001 - the client refused: work on without progress
            self.enabled = False
            return
        future = self.ls.work_done_progress.tokens.get(self.token)
        if future is not None:
            future.add_done_callback(lambda f: f.cancelled() and self.on_cancel())
        self.ls.work_done_progress.begin(
            self.token,
            types.WorkDoneProgressBegin(
                title=self.title, message=message, cancellable=True, percentage=0
            ),
        )

    def report(self, done: int, total: int, message: str) -> None:
        if self.enabled:
            percentage = round(100 * done / total) if total else 100
            self.ls.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def end(self, message: str) -> None:
        if self.enabled:
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
            self.ls.work_done_progress.tokens.pop(self.token, None)


def _edit_for(
    document: Any, outcome: docstrings.DocstringOutcome, version: int, versioned: bool
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


def setup(server: Any) -> None:
    project_cache: dict[str, list[str]] = {}

    async def project_docs(ls: Any, uri: str) -> list[str]:
        root = ls.workspace.root_path if ls.workspace is not None else None
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if not root and path:
            root = str(docstrings.project_root(Path(path)))
        if not root:
            return []
        if root not in project_cache:
            project_cache[root] = await asyncio.to_thread(docstrings.project_docstrings, root)
        return project_cache[root]

    server.add_code_action_provider([KIND], code_actions)

    @server.command(COMMAND)
    async def on_generate(ls, *args):  # type: ignore[no-untyped-def]
        return await generate_command(ls, args, project_docs)


async def generate_command(ls: Any, args: Sequence[Any], project_docs: Any) -> dict[str, Any]:
    """Generate and apply the docstring for the definition at (uri, position)."""
    uri, position = _arguments(args)
    document, offset = document_at(ls.documents, uri, position)
    if document.tree is None:
        raise JsonRpcInvalidParams(
            f"Docstrings are generated for Python only, not {document.language_id}."
        )
    project = await project_docs(ls, uri) if ls.settings.docstring_style == "auto" else []
    document, offset = document_at(ls.documents, uri, position)  # the newest after awaiting
    version = document.version
    budget = prompt_budget(ls.worker, ls.settings.n_ctx)
    try:
        job = docstrings.prepare(
            document.text,
            tree=document.tree.copy() if document.tree is not None else None,
            offset=offset,
            style=ls.settings.docstring_style,
            project_docstrings=project,
        )
    except docstrings.DocstringError as error:
        raise JsonRpcInvalidParams(str(error)) from None

    run = _Run(ls.worker, key=f"docstring:{uri}")
    title = f"Ghostpilot: docstring for {job.structure.name}"
    progress = _Progress(ls, title, lambda: run.cancel("cancelled from the progress bar"))
    await progress.begin("reading the code")
    loop = asyncio.get_running_loop()

    def report(done: int, total: int, message: str) -> None:
        loop.call_soon_threadsafe(progress.report, done, total, message)

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
        return {
            "applied": False,
            "cancelled": True,
            "reason": str(error),
            "name": job.structure.name,
        }
    except docstrings.DocstringError as error:
        progress.end(str(error))
        raise JsonRpcInternalError(str(error)) from None

    current = ls.documents.get(uri) if uri in ls.documents else None
    if current is None:
        progress.end("the document was closed")
        raise JsonRpcInvalidParams(f"{uri} was closed while its docstring was generated.")
    if current.version != version:  # edited meanwhile: place the same prose in the new text
        try:
            moved = docstrings.prepare(
                current.text,
                name=_qualified_name(job),
                style=job.style.value,
            )
            texts = (
                dict(outcome.draft.texts)
                if outcome.draft
                else skeleton(moved.structure, moved.pieces, moved.previous_summary)
            )
            if set(texts) != set(slot_keys(moved.pieces)):
                raise docstrings.NoDefinition("its signature changed")
            outcome = docstrings.finish(moved, texts, outcome.draft)
        except docstrings.DocstringError as error:
            progress.end("the document changed")
            raise JsonRpcInternalError(
                f"The document changed while the docstring was generated: {error}"
            ) from None
        document, version = current, current.version

    capabilities = ls.client_capabilities.workspace
    versioned = bool(
        capabilities
        and capabilities.workspace_edit
        and capabilities.workspace_edit.document_changes
    )
    label = "Regenerate docstring" if job.regenerate else "Generate docstring"
    response = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(
            edit=_edit_for(document, outcome, version, versioned), label=label
        )
    )
    applied = bool(response and response.applied)
    progress.end("done" if applied else "the editor did not apply the edit")
    draft = outcome.draft
    return {
        "applied": applied,
        "failureReason": getattr(response, "failure_reason", None),
        "name": job.structure.name,
        "style": outcome.style.value,
        "docstring": outcome.literal,
        "fromModel": draft.model_slots if draft else 0,
        "slots": len(draft.origin) if draft else 0,
        "placeholders": sum(1 for o in draft.origin.values() if o == "placeholder") if draft else 0,
        "note": note,
    }


def _qualified_name(job: docstrings.DocstringJob) -> str:
    """``Outer.inner`` path of the job's definition, to find it again in a newer text."""
    parts: list[str] = []
    node: Node | None = job.definition.node
    while node is not None:
        if node.type in ("function_definition", "class_definition"):
            name = node.child_by_field_name("name")
            if name is not None and name.text is not None:
                parts.insert(0, name.text.decode("utf-8", "replace"))
        node = node.parent
    return ".".join(parts)
