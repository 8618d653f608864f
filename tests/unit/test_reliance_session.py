"""The reliance session without LSP: editor events as plain values, ``changed(uri)`` back.

No event loop runs here, so saves happen at once and test scans are synchronous.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lsp_server.parsing.document import DocumentStore, RangeEdit
from lsp_server.reliance.runner import RunOutcome, RunOutput
from lsp_server.reliance.session import (
    Accepted,
    Notice,
    RelianceError,
    RelianceSession,
    RunJob,
    run_failure,
    summarize,
)
from lsp_server.reliance.settings import RelianceSettings
from lsp_server.reliance.state import state_path

CALC = "def add(a, b):\n    return a + b\n"
BODY = "return a + b\n"
TEST_ADD = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"


class Harness:
    """A session wired to a DocumentStore the way the LSP layer wires it."""

    def __init__(self, root: Path, settings: RelianceSettings | None = None) -> None:
        self.root = root
        self.settings = settings or RelianceSettings(state_location="workspace")
        self.roots = [root]
        self.changed: list[str] = []
        self.notices: list[Notice] = []
        self.documents = DocumentStore()
        self.session = RelianceSession(
            self.documents,
            settings=lambda: self.settings,
            roots=lambda: self.roots,
            changed=self.changed.append,
            notify=self.notices.append,
            loop=lambda: None,
        )
        self.documents.add_open_listener(self.session.opened)
        self.documents.add_listener(self.session.edited)
        self.documents.add_close_listener(self.session.closed)
        self.versions: dict[str, int] = {}

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def open(self, name: str, text: str) -> str:
        uri = self.uri(name)
        self.versions[uri] = 1
        self.documents.open(uri, text, 1, "python")
        return uri

    def insert(self, uri: str, line: int, character: int, text: str) -> None:
        self.versions[uri] += 1
        self.documents.change(uri, self.versions[uri], [RangeEdit(((line, character), (line, character)), text)])

    def accept(self, uri: str, suggestion_id: str = "s1", text: str = BODY) -> None:
        document = self.documents.get(uri)
        start = document.text.index(text)
        self.session.accept(Accepted(suggestion_id, uri, text, start, "test-model", 1000.0))

    def statuses(self, uri: str) -> dict[str, str]:
        found = self.session.entries(self.documents.get(uri))
        assert found is not None
        return {e.qualname: e.status for e in found[1]}


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    return Harness(root)


def test_accept_flags_the_function_saves_and_says_changed(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    assert harness.changed == []
    harness.accept(uri)
    assert harness.changed == [uri]
    (entry,) = harness.session.warnings(harness.documents.get(uri))
    assert (entry.qualname, entry.status, entry.path) == ("add", "untested", "calc.py")
    assert CALC[entry.ai_range[0] : entry.ai_range[1]] == "return a + b"  # the function's AI code
    assert (harness.root / ".ghostpilot" / "reliance.json").is_file()  # no loop: saved at once
    assert harness.session.tracks(uri)


def test_accepting_the_same_suggestion_twice_records_it_once(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.accept(uri)
    (report,) = harness.session.reports()
    assert [(e.qualname, e.record_ids) for e in report.entries] == [("add", ("s1",))]
    assert harness.changed == [uri]


def test_accept_for_a_closed_document_is_reported_once_per_uri(harness: Harness) -> None:
    harness.session.accept(Accepted("s1", harness.uri("calc.py"), BODY, 15, "m", 1.0))
    (notice,) = harness.notices
    assert notice.key == f"reliance-accept:{harness.uri('calc.py')}"
    assert "not open" in notice.message
    assert harness.changed == []


def test_edits_move_the_ai_range(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.changed.clear()
    harness.insert(uri, 0, 0, "import os\n\n\n")
    assert harness.changed == [uri]
    document = harness.documents.get(uri)
    (entry,) = harness.session.flagged(document)
    assert document.text[entry.ai_range[0] : entry.ai_range[1]] == "return a + b"


def test_an_open_test_file_that_calls_the_function_clears_it(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.changed.clear()
    test_uri = harness.open("test_calc.py", "")
    harness.insert(test_uri, 0, 0, TEST_ADD)
    assert uri in harness.changed  # the index changed: every open document
    assert harness.statuses(uri) == {"add": "tested"}
    assert harness.session.flagged(harness.documents.get(uri)) == []


def test_close_then_changed_outside_the_editor_sets_records_aside(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.documents.close(uri)
    (harness.root / "calc.py").write_text("def add(a, b):\n    return b - a  # rewritten\n")
    harness.open("calc.py", (harness.root / "calc.py").read_text())
    (notice,) = harness.notices
    assert notice == Notice("1 AI record(s) in calc.py no longer match the file and were set aside", warning=False)
    assert harness.session.reports()[0].detached == 1


def test_close_keeps_records_that_reopen_unchanged(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.documents.close(uri)
    harness.changed.clear()
    harness.open("calc.py", CALC)
    assert harness.notices == []
    assert harness.changed == [uri]
    assert harness.statuses(uri) == {"add": "untested"}


def test_a_deleted_file_loses_its_records(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.documents.close(uri)
    (harness.root / "calc.py").unlink()
    harness.session.files_changed([(uri, True)])
    assert harness.session.reports()[0].entries == []


def test_a_deleted_event_for_a_file_that_exists_keeps_them(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.documents.close(uri)
    harness.session.files_changed([(uri, True)])
    assert [e.qualname for e in harness.session.reports()[0].entries] == ["add"]


def test_a_test_file_written_on_disk_changes_every_open_status(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.changed.clear()
    (harness.root / "test_calc.py").write_text(TEST_ADD)
    harness.session.files_changed([(harness.uri("test_calc.py"), False)])
    assert harness.changed == [uri]
    assert harness.statuses(uri) == {"add": "tested"}


def test_renamed_files_keep_their_records(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    (harness.root / "calc.py").rename(harness.root / "maths.py")
    harness.documents.close(uri)
    new_uri = harness.open("maths.py", CALC)
    harness.changed.clear()
    harness.session.renamed([(uri, new_uri)])
    assert new_uri in harness.changed
    assert harness.statuses(new_uri) == {"add": "untested"}
    assert [e.path for e in harness.session.reports()[0].entries] == ["maths.py"]


def test_a_new_state_location_moves_the_next_save(harness: Harness, tmp_path: Path) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    workspace_file = harness.root / ".ghostpilot" / "reliance.json"
    assert workspace_file.is_file()
    harness.settings = RelianceSettings(state_location="xdg")
    assert harness.session.settings.state_location == "xdg"
    harness.session.save_all()
    assert state_path(harness.root, "xdg").is_file()
    assert state_path(harness.root, "xdg").is_relative_to(tmp_path / "state")


def test_a_workspace_folder_added_later_adopts_open_buffers_once(harness: Harness) -> None:
    """The change that loads a workspace is not applied to its records a second time."""
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    harness.documents.close(uri)
    later = Harness(harness.root)
    later.roots = []  # no folder yet: the document lands in the no-workspace bucket
    uri = later.open("calc.py", CALC)
    later.roots = [harness.root]
    later.insert(uri, 0, 0, "# header\n")
    document = later.documents.get(uri)
    (entry,) = later.session.flagged(document)
    assert document.text[entry.ai_range[0] : entry.ai_range[1]] == "return a + b"


def test_mark_reviewed_clears_the_flag(harness: Harness) -> None:
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    assert harness.session.mark_reviewed(uri, "add") == len("return a + b")
    assert harness.statuses(uri) == {"add": "reviewed"}
    assert harness.session.flagged(harness.documents.get(uri)) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda s, h: s.mark_reviewed(h.uri("other.py"), "add"), "document is not open", id="not-open"),
        pytest.param(lambda s, h: s.mark_reviewed(h.open("calc.py", CALC), "sub"), "no AI-written code is tracked in 'sub'", id="no-ai-code"),
        pytest.param(lambda s, h: s.mark_reviewed("untitled:Untitled-1", "add"), "document is not open", id="untitled"),
        pytest.param(lambda s, h: s.reports("/nowhere"), "/nowhere is not a workspace folder", id="report-folder"),
        pytest.param(lambda s, h: s.plan_run("untitled:Untitled-1", None), "is not a file this server tracks", id="run-untitled"),
        pytest.param(lambda s, h: s.draft_test(h.open("calc.py", CALC), "sub"), "no function 'sub'", id="draft-unknown"),
    ],
)  # fmt: skip
def test_commands_the_session_cannot_serve(harness: Harness, call, message: str) -> None:
    with pytest.raises(RelianceError, match=message):
        call(harness.session, harness)


def test_plan_run_selects_the_tests_that_reference_the_function(harness: Harness) -> None:
    (harness.root / "test_calc.py").write_text(TEST_ADD)
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    (job,) = harness.session.plan_run(uri, None)
    assert job.runnable
    assert [(t.qualname, t.tests) for t in job.targets] == [("add", ("test_calc.py::test_add",))]
    assert job.names == "add"
    (everything,) = harness.session.plan_run(None, None)
    assert everything.targets == job.targets


def test_finish_run_keeps_results_but_not_of_a_cancelled_run(harness: Harness) -> None:
    (harness.root / "test_calc.py").write_text(TEST_ADD)
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    (job,) = harness.session.plan_run(uri, "add")
    harness.session.finish_run(job, RunOutput(False, "the test run was cancelled", outcome=RunOutcome.CANCELLED))
    assert harness.statuses(uri) == {"add": "tested"}
    stopped = RunOutput(False, "the test run was stopped: timeout after 1 s", outcome=RunOutcome.STOPPED)
    harness.session.finish_run(job, stopped)
    assert harness.statuses(uri) == {"add": "failing"}


def test_draft_test_names_a_new_test_file_and_the_import(harness: Harness) -> None:
    (harness.root / "tests").mkdir()
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    draft = harness.session.draft_test(uri, "add")
    assert (draft.test_key, draft.existing, draft.name) == ("tests/test_calc.py", None, "test_add")
    assert draft.test_uri == harness.uri("tests/test_calc.py")
    assert draft.imports == "from calc import add"
    assert "def add(a, b):" in draft.prompt.text and draft.prompt.text.endswith("def test_add():\n    ")


def _job(harness: Harness) -> RunJob:
    uri = harness.open("calc.py", CALC)
    located = harness.session.locate(uri)
    assert located is not None
    return RunJob(located.workspace, [])


@pytest.mark.parametrize(
    ("output", "failure"),
    [
        pytest.param(RunOutput(True, "1 passed"), None, id="passed"),
        pytest.param(RunOutput(False, "the test run was cancelled", outcome=RunOutcome.CANCELLED), None, id="cancelled"),
        pytest.param(RunOutput(False, "the test run was stopped: killed", outcome=RunOutcome.STOPPED),
                     "the test run was stopped: killed", id="stopped"),
        pytest.param(RunOutput(False, "cannot import pytest", outcome=RunOutcome.ERROR), "cannot import pytest", id="error"),
    ],
)  # fmt: skip
def test_run_failure(output: RunOutput, failure: str | None) -> None:
    assert run_failure(output) == failure


def test_summarize(harness: Harness) -> None:
    job = _job(harness)
    output = RunOutput(True, "1 passed, 0 failed, 0 skipped in 0.1 s (rlimits)", isolation="rlimits",
                       outcomes={"t::a": {"outcome": "passed"}})  # fmt: skip
    result = summarize([job, job], [None, output])
    assert result.summary == "no test references the AI-written functions; 1 passed, 0 failed, 0 skipped in 0.1 s (rlimits)"
    assert result.runs == [{
        "workspace": str(harness.root), "ok": True, "message": output.message, "isolation": "rlimits",
        "counts": {"passed": 1, "failed": 0, "skipped": 0},
    }]  # fmt: skip
    assert summarize([], []).summary == "nothing to run"


def test_an_accepted_tested_candidate_keeps_its_evidence_while_its_code_holds(harness: Harness) -> None:
    """Accepting a tested suggestion records what it passed, against which code; the
    diagnostics' detail says it (and that no test references it) until the function
    changes, and the state file keeps it across a restart."""
    uri = harness.open("calc.py", CALC)
    document = harness.documents.get(uri)
    evidence = {"function": "add", "examples": [True, True, True], "tests": {}, "label": "passes 3/3 examples"}
    harness.session.accept(Accepted("t1", uri, BODY, document.text.index(BODY), "m", 1000.0, evidence))
    (entry,) = harness.session.warnings(harness.documents.get(uri))
    assert entry.status == "untested"  # passing its own examples does not clear the warning
    assert entry.detail == "AI code, passes its 3 docstring examples; no test file references it"
    restarted = Harness(harness.root)
    again = restarted.open("calc.py", CALC)
    (kept,) = restarted.session.warnings(restarted.documents.get(again))
    assert kept.detail == entry.detail
    harness.insert(uri, 1, 4, "x = 1\n    ")  # the function changed: the evidence no longer holds
    (changed,) = harness.session.warnings(harness.documents.get(uri))
    assert "docstring examples" not in changed.detail
    assert changed.detail == "no test references it"


def test_keystrokes_locate_a_file_once_while_the_folders_stay(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every edit asks for the file's workspace and key; resolving the path (syscalls)
    happens once per URI and set of workspace folders, not at every keystroke."""
    import lsp_server.reliance.session as session_module

    calls: list[Path] = []
    real = session_module.workspace_root_of

    def counting(path: Path, roots: Any) -> Path | None:
        calls.append(path)
        return real(path, roots)

    monkeypatch.setattr(session_module, "workspace_root_of", counting)
    uri = harness.open("calc.py", CALC)
    harness.accept(uri)
    found = len(calls)  # opening loads the workspace, which adopts the buffer
    for column in range(20):
        harness.insert(uri, 0, column, "x")
    assert len(calls) == found <= 2
    located = harness.session.locate(uri)
    assert located is not None and located.key == "calc.py"
    harness.roots = [harness.root.parent]  # the folders changed: found again
    located = harness.session.locate(uri)
    assert found < len(calls) <= found + 2  # a new workspace, which adopts the buffer too
    assert located is not None and located.key == "ws/calc.py"
