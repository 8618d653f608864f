"""policy.may_read: the never-read rules alone (for what the user asks of one file, and
for files read for context), beside may_complete's."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.config import Settings, merge
from lsp_server.policy import Verdict, may_complete, may_read


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        pytest.param("file:///w/.env", ".env matches neverReadGlobs pattern '.env'", id="env"),
        pytest.param("untitled:.env.local", ".env.local matches neverReadGlobs pattern '.env.*'", id="untitled"),
        pytest.param("vscode-vfs://github/o/r/id.key", "id.key matches neverReadGlobs pattern '*.key'", id="remote"),
        pytest.param("file:///w/app.py", None, id="allowed"),
        pytest.param("untitled:Untitled-1", None, id="untitled-allowed"),
    ],
)
def test_may_read(uri: str, reason: str | None) -> None:
    expected = Verdict(True) if reason is None else Verdict(False, reason)
    assert may_read(uri, Settings()) == expected


def test_may_read_ignores_what_only_stops_suggestions() -> None:
    settings, problems = merge(Settings(), {"enable": False, "excludeGlobs": ["*.py"], "enabledLanguages": ["rust"]})
    assert problems == []
    assert not may_complete("file:///w/app.py", "python", settings).allowed
    assert may_read("file:///w/app.py", settings) == Verdict(True)


def test_may_read_follows_gitignore_while_respected(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("build/\n")
    uri = (tmp_path / "build" / "gen.py").as_uri()
    assert may_read(uri, Settings()) == Verdict(False, "gen.py is ignored by .gitignore")
    relaxed, _ = merge(Settings(), {"respectGitignore": False})
    assert may_read(uri, relaxed).allowed
