"""Which documents may be completed and read for prompts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lsp_server.config import Settings
from lsp_server.policy import Verdict, gitignored, may_complete, uri_to_path

SETTINGS = Settings(n_threads=1)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        pytest.param(".env", ".env", id="dotenv"),
        pytest.param(".env.local", ".env.*", id="dotenv-local"),
        pytest.param("key.pem", "*.pem", id="pem"),
        pytest.param("id.key", "*.key", id="key"),
    ],
)
def test_never_read_secrets(tmp_path: Path, name: str, pattern: str) -> None:
    verdict = may_complete((tmp_path / name).as_uri(), "python", SETTINGS)
    assert verdict == Verdict(False, f"{name} matches neverReadGlobs pattern {pattern!r}")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("environment.py", id="env-prefix-is-fine"),
        pytest.param("keys.py", id="keys-module"),
        pytest.param("pem_tools.py", id="pem-module"),
    ],
)
def test_ordinary_files_allowed(tmp_path: Path, name: str) -> None:
    assert may_complete((tmp_path / name).as_uri(), "python", SETTINGS) == Verdict(True)


@pytest.mark.parametrize(
    ("settings", "language", "reason"),
    [
        pytest.param(
            dataclasses.replace(SETTINGS, enable=False),
            "python",
            "suggestions are turned off (ghostpilot.enable)",
            id="disabled",
        ),
        pytest.param(
            SETTINGS, "rust", "language 'rust' is not in enabledLanguages", id="language-off"
        ),
        pytest.param(
            dataclasses.replace(SETTINGS, enabled_languages=("rust",)),
            "python",
            "language 'python' is not in enabledLanguages",
            id="python-turned-off",
        ),
    ],
)
def test_disabled(tmp_path: Path, settings: Settings, language: str, reason: str) -> None:
    assert may_complete((tmp_path / "a.py").as_uri(), language, settings) == Verdict(False, reason)


@pytest.mark.parametrize(
    ("globs", "name", "allowed"),
    [
        pytest.param(("*_pb2.py",), "api_pb2.py", False, id="generated-name"),
        pytest.param(("*/vendor/*",), "vendor/lib.py", False, id="full-path-glob"),
        pytest.param(("*_pb2.py",), "api.py", True, id="other-file"),
    ],
)
def test_exclude_globs(tmp_path: Path, globs: tuple[str, ...], name: str, allowed: bool) -> None:
    settings = dataclasses.replace(SETTINGS, exclude_globs=globs)
    verdict = may_complete((tmp_path / name).as_uri(), "python", settings)
    assert verdict.allowed is allowed
    if not allowed:
        assert verdict.reason == f"{Path(name).name} matches excludeGlobs pattern {globs[0]!r}"


def test_custom_never_read_globs_replace_defaults(tmp_path: Path) -> None:
    settings = dataclasses.replace(SETTINGS, never_read_globs=("secrets.py",))
    assert may_complete((tmp_path / "secrets.py").as_uri(), "python", settings).allowed is False
    assert may_complete((tmp_path / ".env").as_uri(), "python", settings).allowed is True


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with nested .gitignore files, and a .gitignore above it that must not count."""
    (tmp_path / ".gitignore").write_text("*.py\n", encoding="utf-8")  # outside the repository
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / ".gitignore").write_text("build/\n*.generated.py\n/top_only.py\n", encoding="utf-8")
    (root / "pkg").mkdir()
    (root / "pkg" / ".gitignore").write_text("local_*.py\n", encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("relative", "ignored"),
    [
        pytest.param("main.py", False, id="plain-file"),
        pytest.param("build/out.py", True, id="ignored-directory"),
        pytest.param("pkg/x.generated.py", True, id="root-pattern-in-subdir"),
        pytest.param("pkg/local_settings.py", True, id="nested-gitignore"),
        pytest.param("local_settings.py", False, id="nested-rule-not-above"),
        pytest.param("top_only.py", True, id="anchored"),
        pytest.param("pkg/top_only.py", False, id="anchored-not-in-subdir"),
    ],
)
def test_gitignore(repo: Path, relative: str, ignored: bool) -> None:
    path = repo / relative
    assert gitignored(path) is ignored
    verdict = may_complete(path.as_uri(), "python", SETTINGS)
    assert verdict == (
        Verdict(False, f"{path.name} is ignored by .gitignore") if ignored else Verdict(True)
    )


def test_gitignore_can_be_turned_off(repo: Path) -> None:
    settings = dataclasses.replace(SETTINGS, respect_gitignore=False)
    assert may_complete((repo / "build" / "out.py").as_uri(), "python", settings) == Verdict(True)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        pytest.param("file:///home/u/a%20b.py", Path("/home/u/a b.py"), id="file-uri-unquoted"),
        pytest.param("untitled:Untitled-1", None, id="untitled"),
        pytest.param("/plain/path.py", Path("/plain/path.py"), id="bare-path"),
    ],
)
def test_uri_to_path(uri: str, expected: Path | None) -> None:
    assert uri_to_path(uri) == expected


def test_untitled_buffer_allowed() -> None:
    assert may_complete("untitled:Untitled-1", "python", SETTINGS) == Verdict(True)
