"""The reliance test runner runs a workspace that only its owner can read.

As root every sandboxed run gets a private user id that owns nothing, so a workspace
in a 0700 directory (anything under /root, pytest's temporary directories) used to
fail with PermissionError before a single test ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.reliance.runner import Target, run_tests
from lsp_server.sandbox import isolation_available
from lsp_server.sandbox.isolation import FORCE_ENV

CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
TESTS = ("from calc import add, sub\n\n"
         "def test_add():\n    assert add(2, 3) == 5\n\n"
         "def test_sub():\n    assert sub(2, 3) == 5\n")


@pytest.fixture
def private_workspace(tmp_path: Path) -> Path:
    root = tmp_path / "private" / "ws"
    (root / "tests").mkdir(parents=True)
    (root / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(TESTS)
    for path in [*root.rglob("*"), root, root.parent, tmp_path]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    return root


@pytest.mark.parametrize(
    "isolation",
    [
        pytest.param("bubblewrap", id="bubblewrap",
                     marks=pytest.mark.skipif(isolation_available() != "bubblewrap",
                                              reason="bwrap does not work here")),
        pytest.param("rlimits", id="rlimits"),
    ],
)
def test_tests_run_in_a_0700_workspace(private_workspace: Path, isolation: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if isolation == "rlimits":
        monkeypatch.setenv(FORCE_ENV, "rlimits")
    targets = [
        Target(path="calc.py", qualname=name, names=frozenset({name}), start_line=start,
               end_line=start + 1, ai_lines=frozenset({start + 1}), function_hash=name,
               tests=("tests/test_calc.py",))
        for name, start in (("add", 0), ("sub", 4))
    ]
    output = run_tests(private_workspace, targets, timeout_s=60)
    assert output.ok, output.message
    assert output.isolation == isolation
    assert {k.split("::")[-1]: v["outcome"] for k, v in output.outcomes.items()} == {
        "test_add": "passed", "test_sub": "failed"}
    assert output.lines["calc.py"]["2"] == ["tests/test_calc.py::test_add"]
    # Nothing was written into the workspace, and it is still private.
    written = sorted(p.relative_to(private_workspace).as_posix() for p in private_workspace.rglob("*"))
    assert written == ["calc.py", "tests", "tests/test_calc.py"]
    assert private_workspace.stat().st_mode & 0o777 == 0o700
