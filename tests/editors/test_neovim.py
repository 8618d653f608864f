"""Neovim end to end: the shipped Lua setup (editors/neovim) in headless Neovim 0.7+,
attached to the real ``ghostpilot serve`` with the real embedded model.

The scenario itself is tests/editors/neovim/test_init.lua; this wrapper writes a sample
project, runs ``nvim --headless -u test_init.lua`` once with a timeout, and checks its
exit code and the JSON report it writes (step outcomes and buffer texts). Without nvim
the tests skip, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.editor, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "tests" / "editors" / "neovim" / "test_init.lua"
PLUGIN = REPO / "editors" / "neovim"
ARTIFACTS = REPO / "artifacts" / "editors"
# Model load plus generation on two shared cores can take tens of seconds per step.
STEP_TIMEOUT_S = 240
RUN_TIMEOUT_S = 900

# <COMPLETE> and <DOCSTRING> mark cursor positions and are removed. The completion
# point comes after the docstring point, so the inserted text does not move it.
SAMPLE = '''\
import math


def circle_area(radius):
    """Return the area of a circle with the given radius."""
    return math.pi * radius ** 2


def <DOCSTRING>add(a, b):
    return a + b


def is_even(n):
    """Return True when n is even."""
    <COMPLETE>
'''


def place_markers(template: str) -> tuple[str, dict[str, tuple[int, int]]]:
    """Strip ``<NAME>`` markers; return the text and each marker's (1-based line, 0-based col)."""
    marks: dict[str, tuple[int, int]] = {}
    lines = []
    for number, line in enumerate(template.split("\n"), start=1):
        while (match := re.search(r"<([A-Z]+)>", line)) is not None:
            marks[match.group(1)] = (number, match.start())
            line = line[: match.start()] + line[match.end() :]
        lines.append(line)
    return "\n".join(lines), marks


def function_source(text: str, name: str) -> str:
    """The source of top-level function ``name``: its ``def`` line up to the next top-level line."""
    match = re.search(rf"^def {name}\(.*?(?=^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no function {name} in:\n{text}"
    return match.group(0)


def without_docstring(function: ast.FunctionDef) -> str:
    body = function.body[1:] if ast.get_docstring(function) is not None else function.body
    return ast.dump(ast.Module(body=body, type_ignores=[]))


def check_docstring_only_added(before: str, after: str, name: str) -> str:
    """Assert ``after`` is ``before`` plus a docstring in function ``name``; return the docstring.

    Only that function is parsed, so a suggestion accepted elsewhere in the file (which
    may not parse on its own) cannot hide or fake the result.
    """
    old, new = function_source(before, name), function_source(after, name)
    assert before.replace(old, "") == after.replace(new, ""), "text outside the function changed"
    old_function = ast.parse(old).body[0]
    new_function = ast.parse(new).body[0]
    assert isinstance(old_function, ast.FunctionDef) and isinstance(new_function, ast.FunctionDef)
    docstring = ast.get_docstring(new_function)
    assert docstring and docstring.strip(), f"{name} has no docstring after the action:\n{new}"
    assert without_docstring(new_function) == without_docstring(old_function), (
        f"{name}'s code changed"
    )
    return docstring


def require_editor(binary: str, install_hint: str) -> str:
    """Path of ``binary``; skip when missing, or fail when CI=true demands the editor."""
    path = shutil.which(binary)
    if path:
        return path
    reason = f"{binary} is not installed ({install_hint})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires every editor test to run")
    pytest.skip(f"{reason}; set CI=true to make this a failure")


def server_executable() -> str:
    """The ``ghostpilot`` console script of this environment."""
    beside_python = Path(sys.executable).with_name("ghostpilot")
    path = str(beside_python) if beside_python.exists() else shutil.which("ghostpilot")
    if not path:
        pytest.fail(
            "the ghostpilot executable is missing: run `pip install -e .` in this environment"
        )
    return path


@dataclass
class Run:
    returncode: int
    timed_out: bool
    seconds: float
    stderr: str
    report: dict[str, Any]

    def step(self, name: str) -> dict[str, Any]:
        for entry in self.report.get("steps", []):
            if entry["name"] == name:
                return entry
        pytest.fail(f"step {name!r} did not run; {self.describe()}")

    def facts(self, name: str) -> dict[str, Any]:
        entry = self.step(name)
        if not entry["ok"]:
            pytest.fail(f"step {name!r} failed: {entry.get('error')}")
        return entry["facts"]

    def describe(self) -> str:
        return (
            f"exit code {self.returncode}, timed out: {self.timed_out}, "
            f"report error: {self.report.get('error')}\n--- stderr tail ---\n{self.stderr[-4000:]}"
        )


def run_editor(command: list[str], env: dict[str, str], cwd: Path, result: Path) -> Run:
    """Run the editor in its own process group; kill the group (server included) after."""
    start = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    seconds = time.monotonic() - start
    report = json.loads(result.read_text()) if result.exists() else {}
    return Run(process.returncode, timed_out, seconds, stdout + stderr, report)


@pytest.fixture(scope="module")
def nvim_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    nvim = require_editor("nvim", "apt-get install neovim, or scripts/setup-editors-apt.sh")
    server = server_executable()
    project = tmp_path_factory.mktemp("nvim-project")
    text, marks = place_markers(SAMPLE)
    sample = project / "sample.py"
    sample.write_text(text)
    result = project / "report.json"
    env = dict(
        os.environ,
        GHOSTPILOT_PLUGIN=str(PLUGIN),
        GHOSTPILOT_SERVER=server,
        GHOSTPILOT_FILE=str(sample),
        GHOSTPILOT_COMPLETE_AT="{}:{}".format(*marks["COMPLETE"]),
        GHOSTPILOT_DOCSTRING_AT="{}:{}".format(*marks["DOCSTRING"]),
        GHOSTPILOT_RESULT=str(result),
        GHOSTPILOT_STEP_TIMEOUT_MS=str(STEP_TIMEOUT_S * 1000),
    )
    command = [nvim, "--headless", "-i", "NONE", "-u", str(SCENARIO)]
    run = run_editor(command, env, project, result)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "neovim-report.json").write_text(json.dumps(run.report, indent=2))
    steps = ", ".join(f"{s['name']} {s['seconds']:.1f}s" for s in run.report.get("steps", []))
    print(f"\nneovim {run.report.get('nvim')}: {run.seconds:.1f}s wall ({steps})")
    return run


def test_scenario_exits_cleanly(nvim_run: Run) -> None:
    assert not nvim_run.timed_out, nvim_run.describe()
    assert nvim_run.returncode == 0, nvim_run.describe()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("attach", id="attach-to-ghostpilot-serve"),
        pytest.param("model", id="model-loads"),
        pytest.param("complete", id="completion-offers-ai-item"),
        pytest.param("accept", id="accept-applies-text-edit"),
        pytest.param("docstring", id="docstring-code-action"),
        pytest.param("shutdown", id="server-stops"),
    ],
)
def test_step_passes(nvim_run: Run, name: str) -> None:
    entry = nvim_run.step(name)
    assert entry["ok"], f"{name}: {entry.get('error')}"


def test_ai_item_is_labelled_previewed_and_tracked(nvim_run: Run) -> None:
    facts = nvim_run.facts("complete")
    assert facts["newText"].strip(), "the AI item inserts only whitespace"
    assert re.search(
        r"ghostpilot|\bAI\b", f"{facts['label']} {facts.get('detail') or ''}", re.IGNORECASE
    ), facts
    assert facts["command"]["command"] == "ghostpilot.accept"
    assert len(facts["command"]["arguments"]) == 1, facts["command"]
    assert facts["preview_shown"] and facts["preview_extmarks"] >= 1


def test_accepted_suggestion_is_in_the_buffer(nvim_run: Run) -> None:
    complete = nvim_run.facts("complete")
    accept = nvim_run.facts("accept")
    original = nvim_run.report["original"].splitlines(keepends=True)
    after = accept["after_accept"]
    start, end = complete["range"]["start"], complete["range"]["end"]
    prefix = "".join(original[: start["line"]]) + original[start["line"]][: start["character"]]
    suffix = original[end["line"]][end["character"] :] + "".join(original[end["line"] + 1 :])
    assert after == prefix + complete["newText"] + suffix
    assert function_source(after, "is_even").count(complete["newText"].strip()) == 1
    lines = complete["newText"].split("\n")
    end_column = (start["character"] if len(lines) == 1 else 0) + len(lines[-1])
    assert accept["cursor"] == [start["line"] + len(lines), end_column], (
        "cursor not after the insertion"
    )
    assert accept["preview_cleared"]
    assert accept["accept_result"], "the server answered nothing to ghostpilot.accept"


def test_docstring_code_action_documents_add(nvim_run: Run) -> None:
    facts = nvim_run.facts("docstring")
    assert facts["via"] == "codeAction", facts
    assert re.fullmatch(r"(Re)?[Gg]enerate docstring.*", facts["title"]), facts["title"]
    check_docstring_only_added(nvim_run.report["after_accept"], facts["after_docstring"], "add")
