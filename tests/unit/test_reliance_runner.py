"""Dynamic test runs: mapping coverage back to functions (pure) and real sandboxed runs,
including test files that try to escape."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import pytest

from lsp_server.reliance.records import new_record
from lsp_server.reliance.runner import (
    RunOutcome,
    RunOutput,
    Target,
    function_runs,
    parse_output,
    selection,
)
from lsp_server.reliance.workspace import RelianceWorkspace
from lsp_server.sandbox import SandboxResult, isolation_available


def target(**overrides):
    values = dict(
        path="calc.py", qualname="add", names=frozenset({"add"}), start_line=0, end_line=1,
        ai_lines=frozenset({1}), function_hash="h", tests=("test_calc.py::test_add",),
    )
    values.update(overrides)
    return Target(**values)


@pytest.mark.parametrize(
    ("outcome", "lines", "expected", "failed"),
    [
        pytest.param("passed", {"2": ["test_calc.py::test_add"]}, "passing", [], id="passing"),
        pytest.param("failed", {"2": ["test_calc.py::test_add"]}, "failing", ["test_calc.py::test_add"], id="failing-executed"),
        pytest.param("failed", {}, "failing", ["test_calc.py::test_add"], id="failing-before-call"),
        pytest.param("passed", {"1": [""]}, "not-executed", [], id="only-imported"),
    ],
)
def test_function_runs(outcome, lines, expected, failed):
    output = RunOutput(
        True, "", outcomes={"test_calc.py::test_add": {"outcome": outcome, "message": "E boom"}},
        lines={"calc.py": lines},
    )
    names = {"test_calc.py::test_add": frozenset({"add"})}
    (run,) = function_runs([target()], output, names, {"test_calc.py": "d1"}).values()
    assert run.outcome == expected
    assert run.failed == failed
    assert run.test_digests == {"test_calc.py": "d1"}
    assert run.covered == ([1] if expected == "passing" else [])


def test_selection_prefers_whole_files():
    targets = [
        target(tests=("t/test_a.py", "t/test_b.py::test_x")),
        target(qualname="sub", tests=("t/test_a.py::test_y", "t/test_b.py::test_z")),
    ]
    assert selection(targets) == ["t/test_a.py", "t/test_b.py::test_x", "t/test_b.py::test_z"]


@pytest.mark.parametrize(
    ("status", "reason", "stdout", "expected"),
    [
        pytest.param("timeout", "timeout after 5 s", "", "the test run was stopped: timeout after 5 s", id="timeout"),
        pytest.param("killed", "cancelled", "", "the test run was cancelled", id="cancelled"),
        pytest.param("failed", "", "garbage only", "the test run was stopped: failed", id="no-marker"),
        pytest.param("failed", "", 'M{"error": "cannot import coverage in the sandbox"}', "cannot import coverage in the sandbox", id="driver-error"),
    ],
)
def test_parse_output_failures(status, reason, stdout, expected):
    result = SandboxResult(status, 1, stdout, "", 0.1, "rlimits", reason=reason)
    output = parse_output(result, "M")
    assert not output.ok
    assert output.message == expected


CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


def make_workspace(tmp_path, tests: dict[str, str]) -> RelianceWorkspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    for name, text in tests.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for path in [tmp_path, *[p for p in root.rglob("*")], root]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    workspace = RelianceWorkspace(root, "workspace")
    for body in ("    return a + b\n", "    return a - b\n"):
        workspace.tracker.add("calc.py", new_record(CALC.index(body), body, "m"), CALC)
    workspace.tracker.detach("calc.py", CALC)
    workspace.scan_tests()
    return workspace


def test_real_run_passing_and_failing(tmp_path):
    workspace = make_workspace(
        tmp_path,
        {
            "tests/test_calc.py": "from calc import add, sub\n\n"
            "def test_add():\n    assert add(2, 3) == 5\n\n"
            "def test_sub():\n    assert sub(2, 3) == 5\n",
        },
    )
    output = workspace.run(workspace.targets(), timeout_s=60)
    assert output.ok, output.message
    assert output.counts() == {"passed": 1, "failed": 1, "skipped": 0}
    statuses = {e.qualname: (e.status, e.detail) for e in workspace.report().entries}
    assert statuses["add"][0] == "passing"
    assert statuses["sub"][0] == "failing"
    assert "assert -1 == 5" in statuses["sub"][1]
    # Nothing was written into the workspace (no cache, no bytecode).
    written = sorted(p.relative_to(workspace.root).as_posix() for p in workspace.root.rglob("*"))
    assert written == ["calc.py", "tests", "tests/test_calc.py"]
    # Editing the test makes the result stale: back to the static status.
    (workspace.root / "tests" / "test_calc.py").write_text(
        "from calc import add, sub\n\ndef test_sub():\n    assert sub(2, 3) == -1\n"
    )
    workspace.scan_tests()
    statuses = {e.qualname: e.status for e in workspace.report().entries}
    assert statuses == {"add": "untested", "sub": "tested"}


needs_bubblewrap = pytest.mark.skipif(
    isolation_available() != "bubblewrap", reason="network and file-system containment need bubblewrap"
)


@needs_bubblewrap
def test_malicious_tests_are_contained_and_reported(tmp_path):
    """A test that opens a socket, writes outside its temp dir, or forks without bound."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    outside = tmp_path / f"escaped-{uuid.uuid4().hex}"
    workspace = make_workspace(
        tmp_path,
        {
            "test_evil.py": f"""
import os, socket
from calc import add, sub

def test_socket():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    s.sendall(b"leak")
    assert add(1, 1) == 2

def test_write_outside():
    with open({str(outside)!r}, "w") as fh:
        fh.write("escaped")
    assert add(1, 1) == 2

def test_write_workspace():
    with open(os.path.join(os.path.dirname(__file__), "calc.py"), "a") as fh:
        fh.write("# tampered")
    assert add(1, 1) == 2

def test_fork_bomb():
    children = 0
    try:
        while True:
            if os.fork() == 0:
                import time
                time.sleep(30)
                os._exit(0)
            children += 1
    finally:
        assert sub(1, 1) == 0
"""
        },
    )
    started = time.monotonic()
    output = workspace.run(workspace.targets(), timeout_s=90)
    elapsed = time.monotonic() - started
    # Contained: nothing reached the host.
    try:
        connection, _ = listener.accept()
        connection.close()
        reached = True
    except OSError:
        reached = False
    listener.close()
    assert not reached, "a sandboxed test connected to a host socket"
    assert not outside.exists()
    assert (workspace.root / "calc.py").read_text() == CALC
    # Reported: every one of them failed, and the run itself came back.
    assert output.ok, output.message
    outcomes = {k.split("::")[-1]: v["outcome"] for k, v in output.outcomes.items()}
    assert outcomes == {
        "test_socket": "failed",
        "test_write_outside": "failed",
        "test_write_workspace": "failed",
        "test_fork_bomb": "failed",
    }
    assert "process limit" in output.message or output.counts()["failed"] == 4
    statuses = {e.qualname: e.status for e in workspace.report().entries}
    assert statuses == {"add": "failing", "sub": "failing"}
    assert elapsed < 90


def test_cancel_stops_a_run(tmp_path):
    workspace = make_workspace(
        tmp_path, {"test_slow.py": "import time\nfrom calc import add\n\ndef test_slow():\n    time.sleep(60)\n    assert add(1, 1) == 2\n"}
    )
    cancel = threading.Event()
    threading.Timer(2.0, cancel.set).start()
    started = time.monotonic()
    output = workspace.run(workspace.targets(), timeout_s=60, cancel=cancel)
    assert time.monotonic() - started < 30
    assert output.message == "the test run was cancelled"
    # A cancelled run records nothing.
    assert workspace.state.runs == {}
    assert os.path.exists(workspace.root / "calc.py")


@pytest.mark.parametrize(
    ("status", "reason", "stdout", "outcome"),
    [
        pytest.param("timeout", "timeout after 5 s", "", RunOutcome.STOPPED, id="timeout"),
        pytest.param("killed", "cancelled", "", RunOutcome.CANCELLED, id="cancelled"),
        pytest.param("failed", "", "garbage only", RunOutcome.STOPPED, id="no-marker"),
        pytest.param("failed", "", 'M{"error": "cannot import coverage"}', RunOutcome.ERROR, id="driver-error"),
        pytest.param("ok", "", 'M{"exit_code": 4, "outcomes": {}}', RunOutcome.ERROR, id="pytest-usage-error"),
        pytest.param("ok", "", 'M{"exit_code": 1, "outcomes": {"t.py::a": {"outcome": "failed"}}}',
                     RunOutcome.FINISHED, id="tests-failed"),
    ],
)  # fmt: skip
def test_parse_output_outcome(status, reason, stdout, outcome):
    output = parse_output(SandboxResult(status, 1, stdout, "", 0.1, "rlimits", reason=reason), "M")
    assert output.outcome is outcome
    assert output.ok is (outcome is RunOutcome.FINISHED)


@pytest.mark.parametrize(
    ("output", "recorded"),
    [
        pytest.param(RunOutput(False, "the test run was cancelled", outcome=RunOutcome.CANCELLED), None, id="cancelled"),
        pytest.param(RunOutput(False, "no test references these functions", outcome=RunOutcome.NOT_RUN), None, id="not-run"),
        pytest.param(RunOutput(False, "the test run was stopped: timeout", outcome=RunOutcome.STOPPED), "failing", id="stopped"),
        pytest.param(RunOutput(False, "cannot import pytest", outcome=RunOutcome.ERROR), "error", id="error"),
    ],
)  # fmt: skip
def test_record_keeps_runs_by_outcome_not_by_message(tmp_path, output, recorded):
    """What a run records follows its outcome; the message is only for people."""
    workspace = make_workspace(tmp_path, {"test_calc.py": "from calc import add\n\ndef test_add():\n    add(1, 2)\n"})
    targets = workspace.targets(qualname="add")
    workspace.record(targets, output)
    runs = {key: run.outcome for key, run in workspace.state.runs.items()}
    assert runs == ({} if recorded is None else {"calc.py::add": recorded})
