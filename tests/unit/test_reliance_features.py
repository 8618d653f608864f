"""The reliance feature modules: pure builders of diagnostics, actions and edits, and the
thin handlers on a server object (no client, no model: messages to the client are caught
where the server would send them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.backends.base import CancelToken, ModelInfo
from lsp_server.config import merge
from lsp_server.engine import Suggestion
from lsp_server.features import reliance_commands as rc
from lsp_server.features import reliance_diagnostics as rd
from lsp_server.parsing.document import Document, RangeEdit
from lsp_server.reliance.session import TestDraft
from lsp_server.reliance.settings import RelianceSettings
from lsp_server.reliance.status import Entry
from lsp_server.server import GhostpilotServer, create_server

CALC = "def add(a, b):\n    return a + b\n"


def entry(**overrides: Any) -> Entry:
    values: dict[str, Any] = dict(
        path="calc.py", qualname="add", status="untested", start_line=0, end_line=1, ai_chars=12,
        unreviewed_chars=12, untested_chars=12, share=0.5, models=("m",), last_accepted=0.0,
        record_ids=("s1",), tests=(), detail="no test references it", ai_range=(19, 31),
    )  # fmt: skip
    values.update(overrides)
    return Entry(**values)


# -- pure ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "settings", "message", "severity"),
    [
        pytest.param("untested", RelianceSettings(), "AI-written code in `add` is not exercised by any test "
                     "(50% AI-written; no test references it)", types.DiagnosticSeverity.Information, id="untested"),
        pytest.param("untested", RelianceSettings(severity="hint"), None, types.DiagnosticSeverity.Hint, id="severity-setting"),
        pytest.param("failing", RelianceSettings(), "AI-written code fails its tests: `add` (no test references it)",
                     types.DiagnosticSeverity.Warning, id="failing"),
        pytest.param("failing", RelianceSettings(failing_severity="error"), None, types.DiagnosticSeverity.Error,
                     id="failing-severity-setting"),
    ],
)  # fmt: skip
def test_diagnostic(status: str, settings: RelianceSettings, message: str | None, severity: types.DiagnosticSeverity) -> None:
    document = Document(uri="file:///w/calc.py", text=CALC)
    found = rd.diagnostic(document, entry(status=status), settings)
    assert found.severity == severity
    if message is not None:
        assert found.message == message
    assert (found.source, found.code) == ("ghostpilot", "untested-ai-code")
    assert found.data == {"qualname": "add", "status": status, "path": "calc.py"}
    assert found.range == types.Range(start=types.Position(line=1, character=4), end=types.Position(line=1, character=16))


def test_diagnostic_range_is_in_utf16_columns() -> None:
    text = "def add(a, b):\n    '𝄞'; return a + b\n"
    start = text.index("return")
    document = Document(uri="file:///w/calc.py", text=text)
    found = rd.diagnostic(document, entry(ai_range=(start, start + 12)), RelianceSettings())
    line_start = text.index("\n") + 1
    assert found.range.start == types.Position(line=1, character=start - line_start + 1)  # 𝄞: two UTF-16 units


def ours(qualname: str) -> types.Diagnostic:
    return types.Diagnostic(
        range=types.Range(start=types.Position(line=1, character=4), end=types.Position(line=1, character=16)),
        message="m", source="ghostpilot", code="untested-ai-code", data={"qualname": qualname},
    )


@pytest.mark.parametrize(
    ("start", "end", "tests", "titles"),
    [
        pytest.param(20, 20, (), ["Mark `add` as reviewed", "Generate a test for `add`"], id="inside"),
        pytest.param(0, 5, (), [], id="outside"),
        pytest.param(31, 40, (), ["Mark `add` as reviewed", "Generate a test for `add`"], id="touching-end"),
        pytest.param(20, 20, ("test_calc.py::test_add",),
                     ["Mark `add` as reviewed", "Run tests for `add`", "Generate a test for `add`"], id="with-tests"),
    ],
)  # fmt: skip
def test_code_actions(start: int, end: int, tests: tuple[str, ...], titles: list[str]) -> None:
    foreign = types.Diagnostic(range=ours("add").range, message="x", source="pyright", data={"qualname": "add"})
    diagnostics = [ours("add"), ours("sub"), foreign]
    actions = rc.code_actions("file:///w/calc.py", [entry(tests=tests)], start, end, diagnostics)
    assert [a.title for a in actions] == titles
    for action in actions:
        assert action.kind == types.CodeActionKind.QuickFix
        assert action.diagnostics == [ours("add")]
        assert action.command is not None and action.command.arguments == ["file:///w/calc.py", "add"]


def draft(existing: str | None) -> TestDraft:
    return TestDraft("add", "tests/test_calc.py", "file:///w/tests/test_calc.py", existing,
                     "from calc import add", "test_add", "prompt")  # fmt: skip


def test_test_edit_creates_the_file_with_an_annotation() -> None:
    edit = rc.test_edit(draft(None), "    assert add(1, 2) == 3", annotated=True)
    assert edit.document_changes is not None
    create, change = edit.document_changes
    assert isinstance(create, types.CreateFile) and create.uri == "file:///w/tests/test_calc.py"
    assert isinstance(change, types.TextDocumentEdit)
    assert all(isinstance(e, types.AnnotatedTextEdit) and e.annotation_id == rc.TEST_ANNOTATION for e in change.edits)
    text = "".join(e.new_text for e in change.edits)
    assert "from calc import add" in text and "def test_add():\n    assert add(1, 2) == 3" in text
    assert edit.change_annotations is not None and edit.change_annotations[rc.TEST_ANNOTATION].needs_confirmation


def test_test_edit_appends_to_an_existing_file_without_annotations() -> None:
    existing = "import pytest\n\n\ndef test_other():\n    pass\n"
    edit = rc.test_edit(draft(existing), "    assert add(1, 2) == 3", annotated=False)
    assert edit.document_changes is not None
    (change,) = edit.document_changes
    assert isinstance(change, types.TextDocumentEdit)
    assert all(type(e) is types.TextEdit for e in change.edits)
    assert max(e.range.start.line for e in change.edits) >= 4  # the test goes after the existing one
    assert edit.change_annotations is None


@pytest.mark.parametrize(
    ("given", "ok"),
    [
        pytest.param(["file:///a.py", "add"], True, id="both"),
        pytest.param(["file:///a.py"], False, id="missing-name"),
        pytest.param(["file:///a.py", 3], False, id="name-not-string"),
        pytest.param([], False, id="empty"),
    ],
)
def test_uri_and_qualname(given: list[Any], ok: bool) -> None:
    if ok:
        assert rc.uri_and_qualname("x", given) == ("file:///a.py", "add")
    else:
        with pytest.raises(JsonRpcInvalidParams, match=r"x expects \[uri, function name\]"):
            rc.uri_and_qualname("x", given)


def test_folder_roots() -> None:
    assert rd.folder_roots(["file:///w/a", "file:///w/b%20c"], "/ignored") == [Path("/w/a"), Path("/w/b c")]
    assert rd.folder_roots([], "/w/root") == [Path("/w/root")]
    assert rd.folder_roots([], None) == []


def test_the_roots_follow_the_workspace_folders() -> None:
    """The session asks for the roots at every keystroke: they are made once for the
    folders they come from, and anew when the folders change."""
    server = SimpleNamespace(workspace=SimpleNamespace(
        folders={"a": types.WorkspaceFolder(uri="file:///w/a", name="a")}, root_path="/w"))
    diagnostics = rd.RelianceDiagnostics.__new__(rd.RelianceDiagnostics)
    diagnostics.server, diagnostics._roots = server, None  # type: ignore[assignment]
    first = diagnostics.roots()
    assert first == [Path("/w/a")] and diagnostics.roots()[0] is first[0]
    first.append(Path("/elsewhere"))  # a caller's copy: the kept roots stay
    assert diagnostics.roots() == [Path("/w/a")]
    server.workspace.folders["b"] = types.WorkspaceFolder(uri="file:///w/b", name="b")
    assert diagnostics.roots() == [Path("/w/a"), Path("/w/b")]
    server.workspace.folders.clear()
    assert diagnostics.roots() == [Path("/w")]


def test_accepted_fills_in_model_and_time() -> None:
    suggestion = Suggestion(text="x", start=3, end=3, mode="line", uri="file:///a.py", id="s1")
    found = rd.accepted(suggestion, "fallback-model")
    assert (found.id, found.uri, found.text, found.start, found.model) == ("s1", "file:///a.py", "x", 3, "fallback-model")
    assert found.accepted_at > 0
    suggestion.model, suggestion.accepted_at = "gemma", 5.0
    assert (rd.accepted(suggestion, "fallback-model").model, rd.accepted(suggestion, "x").accepted_at) == ("gemma", 5.0)


def test_accepted_keeps_a_tested_suggestions_evidence() -> None:
    plain = Suggestion(text="x", start=0, end=0, mode="block")
    assert plain.tested is None and rd.accepted(plain, "m").evidence is None
    evidence = {"function": "add", "examples": [True], "tests": {}, "testsReferencing": [], "label": "passes 1/1 examples"}
    tested = Suggestion(text="x", start=0, end=0, mode="block", tested=evidence)
    assert rd.accepted(tested, "m").evidence == evidence


# -- handlers on a server object -------------------------------------------------------------
class Caught:
    def __init__(self, server: GhostpilotServer) -> None:
        self.published: list[types.PublishDiagnosticsParams] = []
        self.shown: list[str] = []
        self.edits: list[types.ApplyWorkspaceEditParams] = []
        server.text_document_publish_diagnostics = self.published.append  # type: ignore[method-assign]
        server.window_show_message = lambda params: self.shown.append(params.message)  # type: ignore[method-assign]

        async def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            self.edits.append(params)
            return types.ApplyWorkspaceEditResult(applied=True)

        server.workspace_apply_edit_async = apply  # type: ignore[method-assign]

    def last(self, uri: str) -> list[types.Diagnostic]:
        return [p for p in self.published if p.uri == uri][-1].diagnostics


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GhostpilotServer:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    server = create_server()
    server.settings, problems = merge(server.settings, {"reliance": {"debounceMs": 10}})
    assert problems == []
    return server


def initialize(server: GhostpilotServer, root: Path) -> None:
    """pygls's own initialize step, which makes ``server.workspace`` with its folders."""
    params = types.InitializeParams(
        capabilities=types.ClientCapabilities(), root_uri=root.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
    )  # fmt: skip
    for _handler in server.protocol.lsp_initialize(params):
        pass


def open_and_accept(server: GhostpilotServer, path: Path) -> str:
    path.write_text(CALC)
    uri = path.as_uri()
    server.documents.open(uri, CALC, 1, "python")
    start = CALC.index("return")
    suggestion = Suggestion(text="return a + b\n", start=start, end=start, mode="block", uri=uri, model="m")
    for listener in server.acceptance_listeners:
        listener(suggestion)
    return uri


def test_setup_wires_one_shared_session(server: GhostpilotServer) -> None:
    reliance = rd.attach(server)
    assert rd.attach(server) is reliance
    assert reliance.session.documents is server.documents
    assert {rc.REPORT, rc.RUN_TESTS, rc.MARK_REVIEWED, rc.GENERATE_TEST} <= set(server.protocol.fm.commands)
    features = server.protocol.fm.features
    assert types.WORKSPACE_DID_CHANGE_WATCHED_FILES in features and types.WORKSPACE_DID_RENAME_FILES in features


def test_publish_then_mark_reviewed_clears(server: GhostpilotServer, tmp_path: Path) -> None:
    caught = Caught(server)
    uri = open_and_accept(server, tmp_path / "calc.py")
    reliance = rd.attach(server)
    (found,) = reliance.publish(uri)
    assert "`add` is not exercised by any test" in found.message
    assert caught.last(uri) == [found]
    assert rc.mark_reviewed(reliance, uri, "add") == {"reviewed": 12, "qualname": "add"}
    assert caught.last(uri) == []
    report = rc.report(reliance, None)
    assert "add" in report["text"] and report["reports"][0]["functions"][0]["status"] == "reviewed"


def test_code_action_provider(server: GhostpilotServer, tmp_path: Path) -> None:
    Caught(server)
    uri = open_and_accept(server, tmp_path / "calc.py")
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(line=1, character=6), end=types.Position(line=1, character=6)),
        context=types.CodeActionContext(diagnostics=[]),
    )
    found = [a for provider in server.code_action_providers for a in (provider(server, params) or [])]
    titles = [a.title for a in found if isinstance(a, types.CodeAction)]
    assert "Mark `add` as reviewed" in titles and "Generate a test for `add`" in titles


def test_report_of_one_workspace_folder(server: GhostpilotServer, tmp_path: Path) -> None:
    Caught(server)
    initialize(server, tmp_path)
    open_and_accept(server, tmp_path / "calc.py")
    report = rc.report(rd.attach(server), tmp_path.as_uri())
    (only,) = report["reports"]
    assert only["workspace"] == str(tmp_path)
    assert [(f["path"], f["qualname"], f["status"]) for f in only["functions"]] == [("calc.py", "add", "untested")]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda r: rc.mark_reviewed(r, "file:///nowhere/x.py", "add"), "document is not open", id="mark-not-open"),
        pytest.param(lambda r: rc.report(r, "file:///nowhere"), "is not a workspace folder", id="report-folder"),
    ],
)  # fmt: skip
def test_bad_command_arguments_are_invalid_params(server: GhostpilotServer, call: Any, message: str) -> None:
    with pytest.raises(JsonRpcInvalidParams, match=message):
        call(rd.attach(server))


async def test_diagnostics_are_debounced_and_follow_edits_and_close(server: GhostpilotServer, tmp_path: Path) -> None:
    caught = Caught(server)
    uri = open_and_accept(server, tmp_path / "calc.py")
    assert caught.published == []  # debounced
    await asyncio.sleep(0.3)
    (first,) = caught.published
    assert (first.version, len(first.diagnostics)) == (1, 1)
    server.documents.change(uri, 2, [RangeEdit(((0, 0), (0, 0)), "import os\n")])
    await asyncio.sleep(0.3)
    assert caught.published[-1].version == 2
    assert caught.published[-1].diagnostics[0].range.start.line == 2
    server.documents.close(uri)
    assert caught.published[-1] == types.PublishDiagnosticsParams(uri=uri, diagnostics=[])


async def test_run_tests_without_tests_says_so(server: GhostpilotServer, tmp_path: Path) -> None:
    caught = Caught(server)
    uri = open_and_accept(server, tmp_path / "calc.py")
    result = await rc.run_tests(rd.attach(server), uri, None)
    assert result == {"summary": "no test references the AI-written functions", "runs": []}
    assert caught.shown == ["Ghostpilot tests: no test references the AI-written functions"]


async def test_generate_test_offers_the_model_test_as_an_edit(server: GhostpilotServer, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    caught = Caught(server)
    initialize(server, tmp_path)
    uri = open_and_accept(server, tmp_path / "calc.py")
    requests: list[Any] = []

    class Model:  # a stand-in for the model, one token a character
        info = ModelInfo("stand-in", "-", None, 2048, 1, 0)

        def tokenize(self, text: str, *, special: bool = False) -> list[int]:
            return [ord(ch) for ch in text]

        def generate(self, request: Any, cancel: Any) -> Any:
            requests.append(request)
            return SimpleNamespace(text="assert add(1, 2) == 3\n")

    async def run(job: Any, key: str) -> Any:  # the worker runs the job with the model
        requests.append(key)
        return job(Model(), CancelToken())

    monkeypatch.setattr(server.worker, "run", run)
    result = await rc.generate_test(rd.attach(server), uri, "add")
    assert result == {"applied": True, "uri": (tmp_path / "test_calc.py").as_uri(), "test": "test_add"}
    key, request = requests
    assert key == f"testgen:{uri}" and request.prompt.endswith("def test_add():\n    ")
    (applied,) = caught.edits
    assert applied.label == "Ghostpilot: test for add"


async def test_deleting_the_ai_code_clears_its_diagnostic(server: GhostpilotServer, tmp_path: Path) -> None:
    caught = Caught(server)
    uri = open_and_accept(server, tmp_path / "calc.py")
    await asyncio.sleep(0.3)
    assert len(caught.last(uri)) == 1
    server.documents.change(uri, 2, [RangeEdit(((1, 4), (1, 16)), "pass")])  # the AI line goes
    await asyncio.sleep(0.3)
    assert caught.last(uri) == []
    assert caught.published[-1].version == 2


async def test_typing_on_after_deleting_the_ai_code_still_clears_it(server: GhostpilotServer, tmp_path: Path) -> None:
    """The edit after the one that removed the last record meets a document the session
    no longer tracks; the diagnostics published before must still be withdrawn."""
    caught = Caught(server)
    uri = open_and_accept(server, tmp_path / "calc.py")
    await asyncio.sleep(0.3)
    assert len(caught.last(uri)) == 1
    server.documents.change(uri, 2, [RangeEdit(((1, 0), (2, 0)), "    pass\n")])  # every AI character
    assert not rd.attach(server).session.tracks(uri)
    server.documents.change(uri, 3, [RangeEdit(((1, 8), (1, 8)), "  # typed on")])
    await asyncio.sleep(0.3)
    assert caught.published[-1].version == 3
    assert caught.last(uri) == []
