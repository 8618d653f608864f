"""Dynamic test runs: the tests that reference AI-written functions, under coverage.py.

One run is one sandboxed subprocess (``lsp_server.sandbox.run_python``) with the
workspace mounted read-only: pytest runs the selected tests while coverage.py records,
per test, which lines it executed (one coverage context per test node id). The driver
prints one JSON line, tagged with a random marker, at the end; nothing is written to
the workspace (no cache, no bytecode, coverage data kept in memory).

Mapping back (pure, :func:`function_runs`): lines executed by passing tests count as
tested; a function whose referencing tests fail, or that failing tests executed, is
``failing``; one whose tests passed but never ran it is ``not-executed``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from lsp_server.reliance.status import FAILING, PASSING, FunctionRun
from lsp_server.sandbox.child import PLAN_AND_FINISH, marked_payload, new_marker

# Runs inside the sandbox: argv = [marker]; plan.json next to it.
DRIVER = PLAN_AND_FINISH + r'''
ROOT = PLAN["root"]
os.chdir(ROOT)
outcomes, collect_errors = {}, []

try:
    import coverage
    import pytest
except ImportError as error:
    finish({"error": "cannot import %s in the sandbox" % error.name})
    raise SystemExit(3)

cov = coverage.Coverage(data_file=None, source=[ROOT], omit=PLAN["omit"], config_file=False)


class Collect:
    def pytest_runtest_setup(self, item):
        cov.switch_context(item.nodeid)

    def pytest_runtest_logreport(self, report):
        if os.getpid() != MAIN_PID:
            os._exit(70)
        entry = outcomes.setdefault(report.nodeid, {"outcome": "passed", "message": ""})
        if report.failed:
            entry["outcome"] = "failed"
            entry["message"] = (entry["message"] + report.longreprtext)[-1500:]
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"

    def pytest_collectreport(self, report):
        if report.failed:
            collect_errors.append({"nodeid": report.nodeid, "message": report.longreprtext[-1500:]})


cov.start()
try:
    code = pytest.main(
        ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", ROOT, *PLAN["args"]],
        plugins=[Collect()],
    )
finally:
    cov.stop()
data = cov.get_data()
lines = {}
for measured in data.measured_files():
    relative = os.path.relpath(measured, ROOT)
    if relative.startswith(".."):
        continue
    lines[relative.replace(os.sep, "/")] = {
        str(number): sorted(contexts) for number, contexts in data.contexts_by_lineno(measured).items()
    }
finish({"exit_code": int(code), "outcomes": outcomes, "collect_errors": collect_errors, "lines": lines})
'''

OMIT = ["*/.venv/*", "*/venv/*", "*/site-packages/*", "*/.tox/*", "*/node_modules/*"]


@dataclass(frozen=True)
class Target:
    """One AI-written function whose tests are to run."""

    path: str  # workspace-relative
    qualname: str
    names: frozenset[str]  # names whose reference counts as "tests it"
    start_line: int  # 0-based, in the file on disk
    end_line: int
    ai_lines: frozenset[int]  # 0-based lines holding unreviewed AI code
    function_hash: str
    tests: tuple[str, ...]  # node ids or whole test-file paths that reference it


class RunOutcome(Enum):
    """How a test run ended (``RunOutput.message`` says it in words)."""

    FINISHED = "finished"  # pytest ran the tests and reported (some may have failed)
    ERROR = "error"  # the driver or pytest failed before reporting any test
    STOPPED = "stopped"  # killed: a limit (time, memory) or a crash
    CANCELLED = "cancelled"  # the user cancelled it; nothing is recorded
    NOT_RUN = "not-run"  # nothing to run: no test references the functions, or no workspace


@dataclass
class RunOutput:
    """What came back from one sandboxed run, parsed."""

    ok: bool
    message: str  # why not ok, or a one-line summary
    isolation: str = ""
    exit_code: int | None = None
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)
    lines: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    collect_errors: list[dict[str, str]] = field(default_factory=list)
    duration_s: float = 0.0
    outcome: RunOutcome = RunOutcome.FINISHED

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "skipped": 0}
        for entry in self.outcomes.values():
            out[entry.get("outcome", "failed")] = out.get(entry.get("outcome", "failed"), 0) + 1
        return out


def selection(targets: Sequence[Target]) -> list[str]:
    """The pytest arguments (node ids and files) covering every target, deduplicated."""
    files = {t for target in targets for t in target.tests if "::" not in t}
    chosen: list[str] = sorted(files)
    for target in targets:
        for test in target.tests:
            if "::" in test and test.split("::", 1)[0] not in files and test not in chosen:
                chosen.append(test)
    return chosen


Execute = Callable[..., Any]


def run_tests(
    root: Path,
    targets: Sequence[Target],
    *,
    timeout_s: float = 120.0,
    cancel: threading.Event | None = None,
    execute: Execute | None = None,
) -> RunOutput:
    """Run the tests of ``targets`` in the sandbox and parse what came back."""
    args = selection(targets)
    if not args:
        return RunOutput(False, "no test references these functions", outcome=RunOutcome.NOT_RUN)
    if execute is None:
        from lsp_server.sandbox import SandboxLimits, run_python

        execute = run_python
        limits = SandboxLimits(
            timeout_s=timeout_s, memory_mb=4096, max_processes=64, max_file_mb=64,
            output_limit_kb=8192,
        )
    else:
        limits = None
    marker = new_marker()
    root_str = str(root.resolve())
    paths = [root_str] + ([str(root / "src")] if (root / "src").is_dir() else [])
    plan = {"root": root_str, "paths": paths, "omit": OMIT, "args": args}
    kwargs: dict[str, Any] = {
        "argv": [marker],
        "files": {"plan.json": json.dumps(plan)},
        "workdir_ro_mounts": [root_str],
        "cancel": cancel,
        "env": {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"},
    }
    if limits is not None:
        kwargs["limits"] = limits
    result = execute(DRIVER, **kwargs)
    return parse_output(result, marker)


def parse_output(result: Any, marker: str) -> RunOutput:
    """Turn a ``SandboxResult`` into a :class:`RunOutput` (pure)."""
    isolation = getattr(result, "isolation", "")
    duration = float(getattr(result, "duration_s", 0.0) or 0.0)
    payload = marked_payload(result.stdout, marker)
    if result.status in ("timeout", "killed") or payload is None:
        reason = getattr(result, "reason", "") or result.status
        if reason == "cancelled":
            outcome, message = RunOutcome.CANCELLED, "the test run was cancelled"
        else:
            tail = _tail(result.stderr)
            outcome = RunOutcome.STOPPED
            message = f"the test run was stopped: {reason}" + (f" ({tail})" if tail else "")
        return RunOutput(False, message, isolation, result.returncode, duration_s=duration, outcome=outcome)
    if "error" in payload:
        return RunOutput(
            False, str(payload["error"]), isolation, result.returncode, duration_s=duration,
            outcome=RunOutcome.ERROR,
        )
    output = RunOutput(
        True,
        "",
        isolation,
        int(payload.get("exit_code", -1)),
        outcomes=dict(payload.get("outcomes", {})),
        lines=dict(payload.get("lines", {})),
        collect_errors=list(payload.get("collect_errors", [])),
        duration_s=duration,
    )
    counts = output.counts()
    output.message = (
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        + (f", {len(output.collect_errors)} collection error(s)" if output.collect_errors else "")
        + f" in {duration:.1f} s ({isolation or 'sandbox'})"
    )
    if output.exit_code not in (0, 1) and not output.outcomes:
        output.ok = False
        output.outcome = RunOutcome.ERROR
        output.message = f"pytest exited with {output.exit_code}: " + (
            _tail(output.collect_errors[0]["message"]) if output.collect_errors else "no tests ran"
        )
    return output


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def function_runs(
    targets: Sequence[Target],
    output: RunOutput,
    test_names: Mapping[str, frozenset[str]],
    test_digests: Mapping[str, str],
) -> dict[str, FunctionRun]:
    """The run result of each target, by ``path::qualname`` (pure).

    ``test_names`` maps test node ids to the names they reference (static index), so
    that a failing test counts against a function it names even if it failed before
    calling it.
    """
    out: dict[str, FunctionRun] = {}
    for target in targets:
        key = f"{target.path}::{target.qualname}"
        digests = {
            path: test_digests[path]
            for path in {t.split("::", 1)[0] for t in target.tests}
            if path in test_digests
        }
        mine = _selected(target, output)
        if not output.ok:
            out[key] = FunctionRun(
                target.function_hash, FAILING if _stopped(output) else "error", list(mine),
                [], [], digests, message=output.message,
            )
            continue
        failed: list[str] = []
        covered: set[int] = set()
        lines = output.lines.get(target.path, {})
        executed_by_failed: set[str] = set()
        for number, contexts in lines.items():
            line = int(number) - 1
            if not target.start_line <= line <= target.end_line:
                continue
            for context in contexts:
                outcome = output.outcomes.get(context, {}).get("outcome")
                if outcome == "passed":
                    covered.add(line - target.start_line)
                elif outcome == "failed":
                    executed_by_failed.add(context)
        for nodeid in mine:
            if output.outcomes.get(nodeid, {}).get("outcome") != "failed":
                continue
            named = test_names.get(nodeid.split("[", 1)[0], frozenset())
            if nodeid in executed_by_failed or named & target.names:
                failed.append(nodeid)
        failed.extend(sorted(executed_by_failed - set(failed)))
        errors = [e["nodeid"] for e in output.collect_errors if _covers(target, e.get("nodeid", ""))]
        failed.extend(e for e in errors if e not in failed)
        ai_relative = {line - target.start_line for line in target.ai_lines}
        if failed:
            outcome = FAILING
        elif covered & ai_relative or (covered and not ai_relative):
            outcome = PASSING
        else:
            outcome = "not-executed"
        out[key] = FunctionRun(
            target.function_hash, outcome, list(mine), failed, sorted(covered), digests,
            message=_failure_message(output, failed),
        )
    return out


def _stopped(output: RunOutput) -> bool:
    return output.outcome is RunOutcome.STOPPED


def _selected(target: Target, output: RunOutput) -> list[str]:
    """Node ids of the run's tests that belong to ``target``'s selection."""
    chosen = []
    for nodeid in output.outcomes:
        if _covers(target, nodeid):
            chosen.append(nodeid)
    return chosen or list(target.tests)


def _covers(target: Target, nodeid: str) -> bool:
    for test in target.tests:
        if nodeid == test or (("::" not in test) and nodeid.split("::", 1)[0] == test):
            return True
        if nodeid.startswith(test + "["):  # parametrized
            return True
    return False


def _failure_message(output: RunOutput, failed: Sequence[str]) -> str:
    for nodeid in failed:
        message = output.outcomes.get(nodeid, {}).get("message", "")
        for entry in output.collect_errors:
            if entry.get("nodeid") == nodeid:
                message = entry.get("message", "")
        if message:
            return _error_line(message)
    return ""


def _error_line(longrepr: str) -> str:
    """The first ``E   ...`` line of a pytest failure (the assertion), else its last line."""
    for line in longrepr.splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:200]
    return _tail(longrepr)
