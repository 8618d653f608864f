"""``ghostpilot docstring FILE[:NAME]`` as a user runs it, with the real embedded model."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.docstrings.styles import parse_docstring

pytestmark = pytest.mark.e2e

_SCRIPT = Path(sys.executable).with_name("ghostpilot")
GHOSTPILOT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lsp_server"]

SOURCE = (
    "class Cart:\r\n"
    "    def add(self, item: str, quantity: int = 1) -> float:\r\n"
    "        self.items.append((item, quantity))\r\n"
    "        return self.total()\r\n"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GHOSTPILOT, "docstring", *args], capture_output=True, text=True, timeout=300
    )


def test_write_keeps_crlf_and_documents_every_parameter(tmp_path: Path) -> None:
    path = tmp_path / "cart.py"
    path.write_bytes(SOURCE.encode())
    done = _run(f"{path}:Cart.add", "--style", "numpy", "--write")
    assert done.returncode == 0, done.stderr
    data = path.read_bytes().decode()
    assert "\n" not in data.replace("\r\n", "")  # still CRLF throughout
    tree = ast.parse(data)
    method = tree.body[0].body[0]  # type: ignore[attr-defined]
    docstring = ast.get_docstring(method)
    assert docstring is not None
    parsed = parse_docstring(docstring)
    assert parsed.style is not None and parsed.style.value == "numpy"
    assert set(parsed.params) == {"item", "quantity"}
    assert parsed.returns is not None and parsed.return_type == "float"
    # Only the docstring was added.
    assert data.replace("\r\n", "\n").count("\n") > SOURCE.count("\n")
    code_lines = [line for line in data.split("\r\n") if line and not line.startswith("        ")]
    assert code_lines == [
        line for line in SOURCE.split("\r\n") if line and not line.startswith("        ")
    ]


def test_diff_without_write_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "f.py"
    path.write_text("def f(a):\n    return a\n")
    done = _run(str(path), "--skeleton")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"--- {path}") and '+    """F.' in done.stdout
    assert path.read_text() == "def f(a):\n    return a\n"


@pytest.mark.parametrize(
    ("content", "target", "message"),
    [
        pytest.param(None, "missing.py", "No such file", id="missing-file"),
        pytest.param("", "empty.py", "empty", id="empty-file"),
        pytest.param("x = 1\n", "x.py:1", "line 1 is not inside a function", id="not-a-function"),
        pytest.param("def f(:\n    pass\n", "bad.py:f", "syntax error", id="syntax-error"),
        pytest.param("def f():\n    pass\n", "f.py:g", "named 'g'", id="unknown-name"),
    ],
)
def test_bad_input(tmp_path: Path, content: str | None, target: str, message: str) -> None:
    name = target.split(":")[0]
    if content is not None:
        (tmp_path / name).write_text(content)
    done = _run(str(tmp_path / target), "--skeleton")
    assert done.returncode == 2
    assert message in done.stderr and done.stdout == ""
