"""Static checks as tests: ruff (lint) and mypy (types) over the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "ruff", "check", "lsp_server", "tests"], id="ruff"),
        pytest.param([sys.executable, "-m", "mypy", "lsp_server"], id="mypy"),
    ],
)
def test_static_checks_pass(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
