"""What the Neovim and Emacs end-to-end tests share: a sample project with cursor markers,
the editor run (its own process group, one timeout) and the JSON report it writes, and the
checks on the Python text the editor leaves behind.

Each editor's scenario script writes ``{"steps": [{"name", "ok", "seconds", "facts"}, ...]}``
to ``GHOSTPILOT_RESULT``; :class:`Run` reads steps and facts from it.
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
from typing import Any, NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "editors"
# Model load plus generation on two shared cores can take tens of seconds per step.
STEP_TIMEOUT_S = 240
RUN_TIMEOUT_S = 900


# -- sample text -----------------------------------------------------------------------

# The start of both editors' sample file: a documented function for the style, <DOCSTRING>
# on an undocumented one, and a function whose body the model writes (each editor's
# scenario appends its cursor markers after it). Markers are used bottom-up, so text
# inserted at one never moves the next.
SAMPLE_START = '''\
import math


def circle_area(radius):
    """Return the area of a circle with the given radius."""
    return math.pi * radius ** 2


def <DOCSTRING>add(a, b):
    return a + b


def is_even(n):
    """Return True when n is even."""
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


def check_labelled_as_ai(facts: dict[str, Any]) -> None:
    """The completion item says it comes from the AI (label or detail)."""
    assert re.search(
        r"ghostpilot|\bAI\b", f"{facts['label']} {facts.get('detail') or ''}", re.IGNORECASE
    ), facts


def check_docstring_action(title: str, before: str, after: str, name: str) -> str:
    """The code action was "Generate docstring" (or "Regenerate ...") and only added a
    docstring to function ``name``; return the docstring."""
    assert re.fullmatch(r"(Re)?[Gg]enerate docstring.*", title), title
    return check_docstring_only_added(before, after, name)


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


# -- prerequisites ---------------------------------------------------------------------


def missing(reason: str) -> NoReturn:
    """Skip, or fail when CI=true demands every editor test to run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires every editor test to run")
    pytest.skip(f"{reason}; set CI=true to make this a failure")


def require_editor(binary: str, install_hint: str) -> str:
    """Path of ``binary``; skip when missing, or fail when CI=true demands the editor."""
    path = shutil.which(binary)
    if path:
        return path
    missing(f"{binary} is not installed ({install_hint})")


def server_executable() -> str:
    """The ``ghostpilot`` console script of this environment."""
    beside_python = Path(sys.executable).with_name("ghostpilot")
    path = str(beside_python) if beside_python.exists() else shutil.which("ghostpilot")
    if not path:
        pytest.fail(
            "the ghostpilot executable is missing: run `pip install -e .` in this environment"
        )
    return path


# -- the run ---------------------------------------------------------------------------


@dataclass
class Project:
    """A temporary project holding ``sample.py`` (markers removed) and the report's path."""

    root: Path
    sample: Path
    result: Path
    marks: dict[str, tuple[int, int]]

    def env(self, plugin: Path, server: str, **extra: str) -> dict[str, str]:
        """The scenario's environment: plugin, server, file, result, ``GHOSTPILOT_<MARK>_AT``."""
        at = {f"GHOSTPILOT_{mark}_AT": "{}:{}".format(*where) for mark, where in self.marks.items()}
        return dict(
            os.environ,
            GHOSTPILOT_PLUGIN=str(plugin),
            GHOSTPILOT_SERVER=server,
            GHOSTPILOT_FILE=str(self.sample),
            GHOSTPILOT_RESULT=str(self.result),
            **at,
            **extra,
        )


def make_project(tmp_path_factory: pytest.TempPathFactory, name: str, template: str) -> Project:
    root = tmp_path_factory.mktemp(name)
    text, marks = place_markers(template)
    sample = root / "sample.py"
    sample.write_text(text)
    return Project(root, sample, root / "report.json", marks)


@dataclass
class Run:
    returncode: int
    timed_out: bool
    seconds: float
    output: str
    report: dict[str, Any]
    # Require ``"ok": true`` exactly, not merely a truthy value, before a step counts as passed.
    strict_ok: bool = False

    def check_exited_cleanly(self) -> None:
        assert not self.timed_out, self.describe()
        assert self.returncode == 0, self.describe()

    def check_step(self, name: str) -> None:
        """The step ran and passed (``"ok": true`` exactly, with ``strict_ok``)."""
        entry = self.step(name)
        ok = entry["ok"] is True if self.strict_ok else bool(entry["ok"])
        assert ok, f"{name}: {entry.get('error')}"

    def step(self, name: str) -> dict[str, Any]:
        for entry in self.report.get("steps", []):
            if entry["name"] == name:
                return entry
        pytest.fail(f"step {name!r} did not run; {self.describe()}")

    def facts(self, name: str) -> dict[str, Any]:
        entry = self.step(name)
        failed = entry["ok"] is not True if self.strict_ok else not entry["ok"]
        if failed:
            pytest.fail(f"step {name!r} failed: {entry.get('error')}")
        return entry["facts"]

    def describe(self) -> str:
        return (
            f"exit code {self.returncode}, timed out: {self.timed_out}, "
            f"report error: {self.report.get('error')}\n--- output tail ---\n{self.output[-4000:]}"
        )

    def timings(self) -> str:
        """``name 1.2s, ...`` for every step in the report."""
        return ", ".join(f"{s['name']} {s['seconds']:.1f}s" for s in self.report.get("steps", []))

    def save(self, filename: str) -> None:
        """Keep the report under ``artifacts/editors/`` for a look after the run."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / filename).write_text(json.dumps(self.report, indent=2))


def run_editor(
    command: list[str], env: dict[str, str], project: Project, *, strict_ok: bool = False
) -> Run:
    """Run the editor in its own process group; kill the group (server included) after."""
    start = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=project.root,
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
    result = project.result
    report = json.loads(result.read_text()) if result.exists() else {}
    return Run(process.returncode, timed_out, seconds, stdout + stderr, report, strict_ok)
