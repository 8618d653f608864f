"""Over-reliance code actions and commands.

- ``textDocument/codeAction`` (a provider): "Mark as reviewed", "Run tests for this
  function" and "Generate a test for this function" on flagged AI-written code;
- ``workspace/executeCommand``: ``ghostpilot.relianceReport`` [workspace URI],
  ``ghostpilot.runTestsForAICode`` [URI, function] (cancellable ``$/progress``),
  ``ghostpilot.markReviewed`` [URI, function], ``ghostpilot.generateTest`` [URI,
  function] (the test arrives as a ``workspace/applyEdit``).

The session (``reliance_diagnostics.attach``) decides; the functions here that build
actions and edits are pure.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path

from lsp_server.backends.base import Cancelled, ModelUnavailable
from lsp_server.features._common import (
    command_arguments,
    optional_string,
    range_offsets,
    shown,
    to_range,
)
from lsp_server.features.reliance_diagnostics import CODE, SOURCE, RelianceDiagnostics, attach
from lsp_server.parsing.document import Document, UnknownDocument
from lsp_server.reliance import testgen
from lsp_server.reliance.runner import RunOutput
from lsp_server.reliance.session import RelianceError, RunJob, TestDraft, run_failure, summarize
from lsp_server.reliance.status import Entry, render

# At run time, not under TYPE_CHECKING: pygls resolves a command handler's annotations
# (typing.get_type_hints) to convert its arguments. No cycle: server.py imports the
# feature modules only inside create_server().
from lsp_server.server import GhostpilotServer, Progress

REPORT = "ghostpilot.relianceReport"
RUN_TESTS = "ghostpilot.runTestsForAICode"
MARK_REVIEWED = "ghostpilot.markReviewed"
GENERATE_TEST = "ghostpilot.generateTest"
TEST_ANNOTATION = "ghostpilot-test"


# -- pure: arguments, actions, edits ---------------------------------------------------------
def uri_and_qualname(command: str, arguments: Sequence[Any]) -> tuple[str, str]:
    if len(arguments) < 2 or not all(isinstance(a, str) for a in arguments[:2]):
        raise JsonRpcInvalidParams(f"{command} expects [uri, function name], got {shown(list(arguments))}")
    return arguments[0], arguments[1]


def code_actions(
    uri: str, flagged: Sequence[Entry], start: int, end: int, diagnostics: Sequence[types.Diagnostic]
) -> list[types.CodeAction]:
    """The actions on flagged functions whose AI-written code meets ``[start, end]``,
    each tied to our diagnostics of that function."""
    ours = [d for d in diagnostics if d.source == SOURCE and d.code == CODE]
    actions: list[types.CodeAction] = []
    for entry in flagged:
        a, b = entry.ai_range
        if not (a <= end and start <= b):
            continue
        matching = [d for d in ours if isinstance(d.data, dict) and d.data.get("qualname") == entry.qualname]
        args = [uri, entry.qualname]
        actions.append(action(f"Mark `{entry.qualname}` as reviewed", MARK_REVIEWED, args, matching))
        if entry.tests:
            actions.append(action(f"Run tests for `{entry.qualname}`", RUN_TESTS, args, matching))
        actions.append(action(f"Generate a test for `{entry.qualname}`", GENERATE_TEST, args, matching))
    return actions


def action(title: str, command: str, args: list[Any], diagnostics: list[types.Diagnostic]) -> types.CodeAction:
    return types.CodeAction(
        title=title,
        kind=types.CodeActionKind.QuickFix,
        diagnostics=diagnostics or None,
        command=types.Command(title=title, command=command, arguments=args),
    )


def test_edit(draft: TestDraft, body: str, *, annotated: bool) -> types.WorkspaceEdit:
    """The edit that adds the generated test (creating the file if needed); ``annotated``:
    the client confirms it as an AI-written change."""
    probe = Document(uri=draft.test_uri, text=draft.existing or "")
    edits: list[types.TextEdit | types.AnnotatedTextEdit] = []
    for piece in testgen.insertions(draft.existing, draft.imports, draft.name, body):
        where = to_range(probe, piece.offset, piece.offset)
        if annotated:
            edits.append(types.AnnotatedTextEdit(range=where, new_text=piece.text, annotation_id=TEST_ANNOTATION))
        else:
            edits.append(types.TextEdit(range=where, new_text=piece.text))
    changes: list[types.TextDocumentEdit | types.CreateFile | types.RenameFile | types.DeleteFile] = []
    if draft.existing is None:
        changes.append(types.CreateFile(uri=draft.test_uri, options=types.CreateFileOptions(ignore_if_exists=True)))
    identifier = types.OptionalVersionedTextDocumentIdentifier(uri=draft.test_uri, version=None)
    changes.append(types.TextDocumentEdit(text_document=identifier, edits=edits))
    annotations = None
    if annotated:
        annotations = {
            TEST_ANNOTATION: types.ChangeAnnotation(
                label="AI-written test", needs_confirmation=True,
                description="Written by the local model: review it before keeping it",
            )
        }
    return types.WorkspaceEdit(document_changes=changes, change_annotations=annotations)


@contextmanager
def invalid_params() -> Iterator[None]:
    """A request the session cannot serve is answered with InvalidParams."""
    try:
        yield
    except RelianceError as error:
        raise JsonRpcInvalidParams(str(error)) from None


# -- client capabilities ---------------------------------------------------------------------
def annotations_supported(ls: GhostpilotServer) -> bool:
    workspace = ls.client_capabilities.workspace if ls.client_capabilities else None
    edit = workspace.workspace_edit if workspace else None
    return bool(edit and edit.change_annotation_support)


# -- handlers --------------------------------------------------------------------------------
def provide_code_actions(reliance: RelianceDiagnostics, params: types.CodeActionParams) -> list[types.CodeAction]:
    try:
        document = reliance.server.documents.get(params.text_document.uri)
    except UnknownDocument:
        return []
    start, end = range_offsets(document, params.range)
    flagged = reliance.session.flagged(document)
    return code_actions(document.uri, flagged, start, end, params.context.diagnostics)


def report(reliance: RelianceDiagnostics, workspace_uri: str | None) -> dict[str, Any]:
    path = (to_fs_path(workspace_uri) or workspace_uri) if workspace_uri else None
    with invalid_params():
        reports = reliance.session.reports(path)
    return {"text": "\n\n".join(render(r) for r in reports), "reports": [r.to_json() for r in reports]}


def mark_reviewed(reliance: RelianceDiagnostics, uri: str, qualname: str) -> dict[str, Any]:
    with invalid_params():
        count = reliance.session.mark_reviewed(uri, qualname)
    reliance.publish(uri)
    return {"reviewed": count, "qualname": qualname}


async def run_tests(reliance: RelianceDiagnostics, uri: str | None, qualname: str | None) -> dict[str, Any]:
    """Run the tests of flagged AI functions (of one function, or of everything)."""
    session, ls = reliance.session, reliance.server
    with invalid_params():
        jobs = session.plan_run(uri, qualname)
    outputs: list[RunOutput | None] = []
    for job in jobs:
        if not job.runnable:
            outputs.append(None)
            continue
        output = await run_with_progress(ls, job, session.settings.test_timeout_s)
        session.finish_run(job, output)  # on the event loop, which owns the state
        outputs.append(output)
        failure = run_failure(output)
        if failure is not None:
            ls.report_error(f"reliance-run:{failure}", failure, types.MessageType.Warning)
    session.schedule_save()
    reliance.publish_all()
    result = summarize(jobs, outputs)
    ls.window_show_message(
        types.ShowMessageParams(type=types.MessageType.Info, message=f"Ghostpilot tests: {result.summary}")
    )
    return {"summary": result.summary, "runs": result.runs}


async def run_with_progress(ls: GhostpilotServer, job: RunJob, timeout: float) -> RunOutput:
    """Run ``job`` in a thread with cancellable ``$/progress`` (a cancelled request or a
    cancelled progress stops the sandbox)."""
    cancel = threading.Event()
    progress = Progress(
        ls, "Ghostpilot: running tests for AI-written code", kind="tests", cancellable=True, on_cancel=cancel.set
    )
    await progress.begin(job.names, percentage=0)
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, lambda: job.workspace.execute(job.targets, timeout_s=timeout, cancel=cancel))
    started = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=1.0)
            if done:
                break
            elapsed = time.monotonic() - started
            progress.report(f"{job.names} ({elapsed:.0f} s)", min(99, int(100 * elapsed / timeout)))
        return future.result()
    except asyncio.CancelledError:  # $/cancelRequest of the command
        cancel.set()
        raise
    finally:
        progress.end("done")


async def generate_test(reliance: RelianceDiagnostics, uri: str, qualname: str) -> dict[str, Any]:
    """Ask the model for a pytest test of ``qualname`` and offer it as a WorkspaceEdit."""
    ls = reliance.server
    with invalid_params():
        draft = reliance.session.draft_test(uri, qualname)
    try:
        result = await ls.worker.run(testgen.generation(draft.prompt), key=f"testgen:{uri}")
    except Cancelled:
        return {"applied": False, "reason": "cancelled"}
    except ModelUnavailable as error:
        ls.report_error(f"model:{error}", str(error))
        return {"applied": False, "reason": str(error)}
    body = testgen.clean_body(result.text)
    if body is None:
        message = f"the model wrote no usable test for {qualname}; try again or write it by hand"
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Warning, message=f"Ghostpilot: {message}"))
        return {"applied": False, "reason": message}
    edit = test_edit(draft, body, annotated=annotations_supported(ls))
    response = await ls.workspace_apply_edit_async(
        types.ApplyWorkspaceEditParams(edit=edit, label=f"Ghostpilot: test for {qualname}")
    )
    return {"applied": bool(response and response.applied), "uri": draft.test_uri, "test": draft.name}


def setup(server: GhostpilotServer) -> None:
    reliance = attach(server)
    server.add_code_action_provider(
        [types.CodeActionKind.QuickFix], lambda ls, params: provide_code_actions(reliance, params)
    )

    @server.command(REPORT)
    def report_command(ls: GhostpilotServer, *args: Any) -> dict[str, Any]:
        return report(reliance, optional_string(command_arguments(args), 0))

    @server.command(RUN_TESTS)
    async def run_tests_command(ls: GhostpilotServer, *args: Any) -> dict[str, Any]:
        given = command_arguments(args)
        return await run_tests(reliance, optional_string(given, 0), optional_string(given, 1))

    @server.command(MARK_REVIEWED)
    def mark_reviewed_command(ls: GhostpilotServer, *args: Any) -> dict[str, Any]:
        return mark_reviewed(reliance, *uri_and_qualname(MARK_REVIEWED, command_arguments(args)))

    @server.command(GENERATE_TEST)
    async def generate_test_command(ls: GhostpilotServer, *args: Any) -> dict[str, Any]:
        return await generate_test(reliance, *uri_and_qualname(GENERATE_TEST, command_arguments(args)))
