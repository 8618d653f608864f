"""Over-reliance warning end to end: ``ghostpilot serve`` with the real embedded model,
driven over stdio by pytest-lsp as an editor would drive it.

1. accept a suggestion by executing its command; 2. the diagnostic appears; 3. a test
file that calls the function clears it; 4. that test made to fail and run gives the
Warning; 5. a restarted server keeps the state; 6. renaming the file keeps its records.
The report command is checked too.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

from lsp_server.parsing.syntax import error_count, parse_text
from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import apply_edit, inline_params

pytestmark = pytest.mark.e2e

CALC = '''def add(a, b):
    """Return the sum of a and b."""
    '''

PASSING_TEST = "from calc import add\n\n\ndef test_add():\n    add(2, 3)\n"
FAILING_TEST = (
    "from calc import add\n\n\ndef test_add():\n"
    "    assert add(2, 3) == 'certainly not what add returns'\n"
)


class Session:
    """One running server and the editor state around it."""

    def __init__(self, client: LanguageClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.versions: dict[str, int] = {}
        self.texts: dict[str, str] = {}
        self.registrations: list[types.Registration] = []
        self.edits: list[types.ApplyWorkspaceEditParams] = []
        self.initialized: types.InitializeResult | None = None

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, text: str) -> str:
        uri = self.uri(name)
        self.texts[uri], self.versions[uri] = text, 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
            )
        )
        return uri

    def replace(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        self.versions[uri] += 1
        self.texts[uri] = apply_edit(self.texts[uri], start, end, text)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(
                            start=types.Position(line=start[0], character=start[1]),
                            end=types.Position(line=end[0], character=end[1]),
                        ),
                        text=text,
                    )
                ],
            )
        )

    def save(self, uri: str) -> None:
        path = Path(uri.removeprefix("file://"))
        path.write_text(self.texts[uri])
        self.client.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )

    def write_file(self, name: str, text: str) -> None:
        """A file changed outside the editor, as a file watcher reports it."""
        path = self.root / name
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        kind = types.FileChangeType.Changed if existed else types.FileChangeType.Created
        self.client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(changes=[types.FileEvent(uri=path.as_uri(), type=kind)])
        )

    async def diagnostics_until(self, uri: str, predicate, timeout: float = 20.0) -> list[types.Diagnostic]:
        """Wait until the published diagnostics of ``uri`` satisfy ``predicate``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = [d for d in self.client.diagnostics.get(uri, []) if d.source == "ghostpilot"]
            if predicate(current):
                return current
            await asyncio.sleep(0.05)
        raise AssertionError(f"diagnostics of {uri} never matched: {self.client.diagnostics.get(uri)}")

    async def command(self, name: str, *arguments):
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(arguments))
        )


def capabilities() -> types.ClientCapabilities:
    caps = client_capabilities("visual-studio-code")
    caps.workspace.did_change_watched_files = types.DidChangeWatchedFilesClientCapabilities(
        dynamic_registration=True
    )
    caps.window.work_done_progress = True
    return caps


async def start(root: Path, env: dict[str, str]) -> Session:
    client = make_test_lsp_client()
    session = Session(client, root)

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register(params: types.RegistrationParams) -> None:
        session.registrations.extend(params.registrations)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit_request(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        session.edits.append(params)  # shown to the user, who declines it here
        return types.ApplyWorkspaceEditResult(applied=False, failure_reason="declined")

    await client.start_io(*SERVER_COMMAND, env=env)
    session.initialized = await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities(),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options={"timeBudgetMs": 4000, "maxTokens": 48},
        )
    )
    return session


async def stop(session: Session) -> None:
    await session.client.shutdown_session()
    await session.client.stop()


def cli_report(root: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lsp_server", "reliance", "report", str(root), *extra],
        env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text(CALC)
    for path in [tmp_path, root, root / "tests"]:
        path.chmod(0o755)  # the sandbox runs tests as an unprivileged user
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    return root, env


async def test_accept_flag_test_fail_restart(workspace):
    root, env = workspace
    session = await start(root, env)
    try:
        # The server asked to watch Python files.
        deadline = time.monotonic() + 10
        while not session.registrations and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        (registration,) = session.registrations
        assert registration.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
        assert registration.register_options["watchers"][0]["globPattern"] == "**/*.py"

        # 1. Accept a suggestion by executing its command.
        calc = session.open("calc.py", CALC)
        for _attempt in range(60):  # the model may still be loading
            result = await session.client.text_document_inline_completion_async(inline_params(calc, 2, 4))
            if result is not None and result.items:
                break
            await asyncio.sleep(0.5)
        assert result is not None and result.items, "the model gave no suggestion"
        item = result.items[0]
        text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
        session.replace(
            calc,
            (item.range.start.line, item.range.start.character),
            (item.range.end.line, item.range.end.character),
            text,
        )
        accepted_at = time.monotonic()
        await session.command(item.command.command, *item.command.arguments)

        # 2. The diagnostic appears.
        (flag,) = await session.diagnostics_until(calc, lambda d: len(d) == 1)
        print(f"diagnostic published {time.monotonic() - accepted_at:.2f} s after acceptance")
        assert flag.code == "untested-ai-code"
        assert flag.severity == types.DiagnosticSeverity.Information
        assert "`add` is not exercised by any test" in flag.message
        lines = session.texts[calc].split("\n")
        assert flag.range.start.line >= 1 and flag.range.end.line < len(lines)
        actions = await session.client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=calc),
                range=flag.range,
                context=types.CodeActionContext(diagnostics=[flag]),
            )
        )
        titles = [a.title for a in actions or []]
        assert "Mark `add` as reviewed" in titles and "Generate a test for `add`" in titles
        session.save(calc)

        # "Generate a test for this function" offers a WorkspaceEdit for review.
        generated = await session.command("ghostpilot.generateTest", calc, "add")
        if generated.get("reason", "").startswith("the model wrote no usable test"):
            print("the model wrote no usable test this time:", generated)
        else:
            (offer,) = session.edits
            create, edit = offer.edit.document_changes
            assert create.kind == "create" and create.uri == session.uri("tests/test_calc.py")
            new_text = "".join(e.new_text for e in edit.edits)
            assert new_text.startswith("from calc import add\n\n\ndef test_add():\n    ")
            assert error_count(parse_text(new_text).root_node) == 0, new_text
            assert offer.edit.change_annotations["ghostpilot-test"].needs_confirmation
            assert generated == {"applied": False, "uri": create.uri, "test": "test_add"}
            print("generated test:\n" + new_text)

        # 3. A test file that calls the function clears the diagnostic.
        session.write_file("tests/test_calc.py", PASSING_TEST)
        await session.diagnostics_until(calc, lambda d: d == [])
        report = await session.command("ghostpilot.relianceReport")
        (entry,) = report["reports"][0]["functions"]
        assert (entry["qualname"], entry["status"]) == ("add", "tested")

        # 4. Make that test fail and run the tests: the Warning appears.
        session.write_file("tests/test_calc.py", FAILING_TEST)
        await asyncio.sleep(1.0)
        assert [d for d in session.client.diagnostics.get(calc, []) if d.source == "ghostpilot"] == []
        outcome = await session.command("ghostpilot.runTestsForAICode")
        assert "1 failed" in outcome["summary"], outcome
        (warning,) = await session.diagnostics_until(calc, lambda d: len(d) == 1)
        assert warning.severity == types.DiagnosticSeverity.Warning
        assert warning.message.startswith("AI-written code fails its tests")
        assert "certainly not what add returns" in warning.message
        ends = [
            r for reports in session.client.progress_reports.values() for r in reports
            if isinstance(r, types.WorkDoneProgressBegin) and "running tests" in (r.title or "")
        ]
        assert len(ends) == 1 and ends[0].cancellable
    finally:
        await stop(session)

    # 5. Restart the server: the state is kept.
    state_files = list((root.parent / "state" / "ghostpilot" / "reliance").glob("project-*.json"))
    assert len(state_files) == 1
    session = await start(root, env)
    try:
        calc = session.open("calc.py", (root / "calc.py").read_text())
        (warning,) = await session.diagnostics_until(calc, lambda d: len(d) == 1)
        assert warning.message.startswith("AI-written code fails its tests")
        before = (await session.command("ghostpilot.relianceReport"))["reports"][0]["functions"]

        # 6. Rename calc.py as VS Code does: the buffer closes and reopens under the new
        # name, the watcher reports the deletion (first, here), then didRenameFiles,
        # which the server asked for.
        assert session.initialized is not None
        operations = session.initialized.capabilities.workspace.file_operations
        assert operations.did_rename.filters[0].pattern.glob == "**"
        (root / "calc.py").rename(root / "maths.py")
        text = session.texts[calc]
        session.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=calc))
        )
        maths = session.open("maths.py", text)
        session.client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=calc, type=types.FileChangeType.Deleted),
            types.FileEvent(uri=maths, type=types.FileChangeType.Created),
        ]))
        session.client.workspace_did_rename_files(
            types.RenameFilesParams(files=[types.FileRename(old_uri=calc, new_uri=maths)])
        )
        after = (await session.command("ghostpilot.relianceReport"))["reports"][0]["functions"]
        assert [(e["path"], e["qualname"], e["ai_chars"], e["record_ids"]) for e in after] == [
            ("maths.py", "add", e["ai_chars"], e["record_ids"]) for e in before
        ]
        # Mark as reviewed under the new name: recorded, nothing is flagged.
        await session.command("ghostpilot.markReviewed", maths, "add")
        await session.diagnostics_until(maths, lambda d: d == [])
    finally:
        await stop(session)

    report = cli_report(root, env, "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    (entry,) = data["functions"]
    assert (entry["path"], entry["qualname"], entry["status"]) == ("maths.py", "add", "reviewed")
    assert data["untested_chars"] == 0
