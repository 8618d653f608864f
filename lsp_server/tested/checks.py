"""Running one candidate against the user's own checks, in the sandbox.

A candidate is the whole file with the candidate body in place. One sandboxed run
(:func:`lsp_server.sandbox.run_python`, never this process) per candidate:

1. the file is imported as its module (from the candidate's text, not the disk: an
   import hook serves it, so the workspace tests that ``import`` it get the candidate);
2. the docstring's examples run with :mod:`doctest` against the module's names, and each
   example's outcome is recorded;
3. the workspace tests that reference the function run under pytest (workspace mounted
   read-only, no cache, no bytecode), each node id's outcome recorded.

The driver prints one JSON line tagged with a random marker, which a candidate that
exits early or prints cannot fake. A candidate that loops, forks or eats memory is
killed by the sandbox's limits and gets the status of that end; the others still rank.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsp_server.evaluation.doctests import Example
from lsp_server.sandbox.child import PLAN_AND_FINISH, VALUE_CHECKER, marked_payload, new_marker

# Runs inside the sandbox: argv = [marker]; plan.json and candidate.py beside it.
DRIVER = PLAN_AND_FINISH + r'''
import ast, doctest, importlib, importlib.abc, importlib.util
with open(os.path.join(HERE, "candidate.py"), encoding="utf-8") as fh:
    SOURCE = fh.read()
ORIGIN = PLAN["origin"] or os.path.join(HERE, "candidate.py")
MODULE = PLAN["module"]
if PLAN["root"]:
    os.chdir(PLAN["root"])
''' + VALUE_CHECKER + r'''

class Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = ORIGIN
        exec(compile(SOURCE, ORIGIN, "exec"), module.__dict__)


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            return importlib.util.spec_from_loader(name, Loader(), origin=ORIGIN)
        return None


sys.meta_path.insert(0, Finder())
payload = {"examples": [], "tests": {}, "error": ""}


class Runner(doctest.DocTestRunner):
    def report_success(self, out, test, example, got):
        outcomes[test.examples.index(example)] = True

    def report_failure(self, out, test, example, got):
        outcomes[test.examples.index(example)] = False

    def report_unexpected_exception(self, out, test, example, exc_info):
        outcomes[test.examples.index(example)] = False


outcomes = {}
count = PLAN["example_count"]
if count:
    try:
        module = importlib.import_module(MODULE)
        names = dict(vars(module))
    except BaseException as error:
        names = None
        payload["error"] = "the file did not import: %s: %s" % (type(error).__name__, error)
    if names is not None:
        test = doctest.DocTestParser().get_doctest(PLAN["doc"], names, PLAN["name"], ORIGIN, 0)
        runner = Runner(checker=ValueChecker(), optionflags=EXAMPLE_FLAGS)
        runner.run(test, out=sys.stderr.write, clear_globs=False)
    payload["examples"] = [bool(outcomes.get(i, False)) for i in range(count)]
    if os.getpid() != MAIN_PID:
        os._exit(70)

if PLAN["tests"]:
    try:
        import pytest
    except ImportError:
        payload["error"] = "pytest is not installed where the sandbox runs"
    else:
        tests = payload["tests"]

        class Collect:
            def pytest_runtest_logreport(self, report):
                if os.getpid() != MAIN_PID:
                    os._exit(70)
                outcome = tests.get(report.nodeid, "passed")
                if report.failed:
                    outcome = "failed"
                elif report.skipped and outcome == "passed":
                    outcome = "skipped"
                tests[report.nodeid] = outcome

            def pytest_collectreport(self, report):
                if report.failed:
                    tests[report.nodeid or "collection"] = "failed"

        sys.modules.pop(MODULE, None)
        pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", PLAN["root"] or HERE,
                     *PLAN["tests"]], plugins=[Collect()])
finish(payload)
'''


@dataclass(frozen=True)
class Checks:
    """What a candidate is checked against, and how its file is imported.

    ``module`` is the file's import name (``pkg.mod``; "candidate" outside a workspace),
    ``origin`` its path on disk ("" outside a workspace), ``root`` the workspace folder
    mounted read-only (with ``paths`` put first on ``sys.path``), ``tests`` the pytest
    node ids or test files that reference the function.
    """

    name: str
    examples: tuple[Example, ...] = ()
    tests: tuple[str, ...] = ()
    module: str = "candidate"
    origin: str = ""
    root: str = ""
    paths: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.examples and not self.tests

    def describe(self) -> str:
        parts = []
        if self.examples:
            parts.append(_count(len(self.examples), "docstring example"))
        if self.tests:
            parts.append(_count(len(self.tests), "test"))
        return " and ".join(parts) or "nothing to check"


@dataclass(frozen=True)
class Evidence:
    """What one candidate passed. ``status``: "ran", or how the run ended instead
    ("timeout", "killed", "error", "cancelled")."""

    examples: tuple[bool, ...] = ()
    tests: dict[str, str] = field(default_factory=dict)
    status: str = "ran"
    message: str = ""
    duration_s: float = 0.0
    # How many tests the checks named, for a candidate whose run never reported them.
    tests_expected: int = 0

    @property
    def examples_passed(self) -> int:
        return sum(self.examples)

    @property
    def examples_total(self) -> int:
        return len(self.examples)

    @property
    def tests_passed(self) -> int:
        return sum(outcome == "passed" for outcome in self.tests.values())

    @property
    def tests_total(self) -> int:
        return max(len(self.tests), self.tests_expected)

    @property
    def passed(self) -> int:
        return self.examples_passed + self.tests_passed

    @property
    def total(self) -> int:
        return self.examples_total + self.tests_total

    @property
    def passes_all(self) -> bool:
        return self.total > 0 and self.passed == self.total

    def label(self) -> str:
        """"passes 3/3 examples, 2/2 tests" (what was not run is not named)."""
        parts = []
        if self.examples_total:
            parts.append(f"{self.examples_passed}/{self.examples_total} examples")
        if self.tests_total:
            parts.append(f"{self.tests_passed}/{self.tests_total} tests")
        text = "passes " + ", ".join(parts) if parts else "nothing to check"
        if self.status != "ran":
            text += f" ({self.message or self.status})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"examples": list(self.examples), "tests": dict(self.tests), "status": self.status,
                "message": self.message, "duration_s": round(self.duration_s, 3),
                "examplesPassed": self.examples_passed, "examplesTotal": self.examples_total,
                "testsPassed": self.tests_passed, "testsTotal": self.tests_total}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evidence:
        return cls(tuple(bool(x) for x in data.get("examples", ())), dict(data.get("tests", {})),
                   str(data.get("status", "ran")), str(data.get("message", "")),
                   float(data.get("duration_s", 0.0)), int(data.get("testsTotal", 0)))


def doctest_text(examples: Sequence[Example]) -> str:
    """``examples`` as a doctest the standard parser reads back one for one (continuation
    lines get their ``...``)."""
    out = []
    for example in examples:
        lines = example.source.rstrip("\n").split("\n")
        out.append(">>> " + lines[0] + "\n" + "".join(f"... {line}\n" for line in lines[1:]))
        out.append(example.want if example.want.endswith("\n") else example.want + "\n")
        out.append("\n")
    return "".join(out)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


Execute = Callable[..., Any]


def check_candidate(
    source: str,
    checks: Checks,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    cancel: threading.Event | None = None,
    execute: Execute | None = None,
) -> Evidence:
    """Run ``source`` (the whole file, candidate in place) against ``checks`` in the
    sandbox, within ``timeout_s``. Never raises for anything the candidate does."""
    if execute is None:
        from lsp_server.sandbox import run_python

        execute = run_python
    from lsp_server.sandbox import SandboxLimits

    marker = new_marker()
    plan = {
        "origin": checks.origin, "module": checks.module, "root": checks.root,
        "paths": list(checks.paths), "name": checks.name,
        "doc": doctest_text(checks.examples), "example_count": len(checks.examples),
        "tests": list(checks.tests),
    }  # fmt: skip
    limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb, max_processes=32,
                           output_limit_kb=1024)
    result = execute(
        DRIVER,
        argv=[marker],
        files={"plan.json": json.dumps(plan), "candidate.py": source},
        workdir_ro_mounts=[checks.root] if checks.root else [],
        limits=limits,
        cancel=cancel,
        env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"},
    )
    return parse_evidence(result, marker, checks)


def parse_evidence(result: Any, marker: str, checks: Checks) -> Evidence:
    """A sandbox result -> :class:`Evidence` (pure)."""
    duration = float(getattr(result, "duration_s", 0.0) or 0.0)
    payload = marked_payload(str(result.stdout), marker)
    failed_examples = tuple(False for _ in checks.examples)
    if payload is None or result.status in ("timeout", "killed"):
        reason = str(getattr(result, "reason", "") or result.status)
        status = "cancelled" if reason == "cancelled" else (
            result.status if result.status in ("timeout", "killed") else "error")
        message = {"timeout": "killed: ran past its time limit"}.get(status, reason)
        if status == "error":
            tail = [x for x in str(result.stderr).strip().splitlines() if x.strip()]
            message = "exited before reporting" + (f": {tail[-1][:200]}" if tail else "")
        return Evidence(failed_examples, {}, status, message, duration, len(checks.tests))
    examples = tuple(bool(x) for x in payload.get("examples", ())) or failed_examples
    tests = {str(k): str(v) for k, v in dict(payload.get("tests", {})).items()}
    return Evidence(examples, tests, "ran", str(payload.get("error", "")), duration, len(checks.tests))


def examples_only(name: str, examples: Sequence[Example]) -> Checks:
    """Checks of a file outside any workspace (the evaluation's tasks, an untitled buffer)."""
    return Checks(name=name, examples=tuple(examples))
