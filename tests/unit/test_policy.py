"""Which documents may be completed and read for prompts."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from lsp_server.config import Settings
from lsp_server.policy import (
    Verdict,
    default_excludes_file,
    gitignored,
    ignored_by,
    may_complete,
    uri_path,
    uri_to_path,
)

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


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        pytest.param("untitled:.env", ".env", id="untitled-name"),
        pytest.param("untitled:Untitled-1", "Untitled-1", id="untitled-default"),
        pytest.param("vscode-vfs://github/owner/repo/.env", "/owner/repo/.env", id="vscode-vfs"),
        pytest.param("untitled:secrets%2Fid.key", "secrets/id.key", id="encoded-slash"),
        pytest.param("untitled:C:%5Cproj%5C.env", "C:/proj/.env", id="backslashes"),
        pytest.param("git:/repo/.env?%7B%22ref%22%3A%22HEAD%22%7D", "/repo/.env", id="git-query"),
        pytest.param("untitled:", None, id="no-path"),
        pytest.param("vscode-vfs://github/", None, id="root-only"),
    ],
)
def test_uri_path(uri: str, expected: str | None) -> None:
    path = uri_path(uri)
    assert (None if path is None else str(path)) == expected


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        pytest.param("untitled:.env", ".env matches neverReadGlobs pattern '.env'", id="untitled"),
        pytest.param("untitled:/home/u/app/.env.local",
                     ".env.local matches neverReadGlobs pattern '.env.*'", id="untitled-path"),
        pytest.param("vscode-vfs://github/owner/repo/.env",
                     ".env matches neverReadGlobs pattern '.env'", id="vscode-vfs"),
        pytest.param("vscode-vfs://github/owner/repo/certs/server.pem",
                     "server.pem matches neverReadGlobs pattern '*.pem'", id="vscode-vfs-pem"),
        pytest.param("vscode-remote://ssh-remote%2Bhost/home/u/app/.env",
                     ".env matches neverReadGlobs pattern '.env'", id="remote"),
        pytest.param("git:/repo/id.key?%7B%7D", "id.key matches neverReadGlobs pattern '*.key'",
                     id="git-scheme"),
        pytest.param("untitled:secrets%2Fid.key", "id.key matches neverReadGlobs pattern '*.key'",
                     id="encoded-slash"),
        pytest.param("file:///home/u/app/.env", ".env matches neverReadGlobs pattern '.env'",
                     id="file"),
    ],
)
def test_never_read_on_every_scheme(uri: str, reason: str) -> None:
    assert may_complete(uri, "python", SETTINGS) == Verdict(False, reason)


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("untitled:Untitled-1", id="untitled"),
        pytest.param("vscode-vfs://github/owner/repo/main.py", id="vscode-vfs"),
        pytest.param("vscode-vfs://github/owner/repo/environment.py", id="env-prefix"),
        pytest.param("untitled:", id="no-path"),
    ],
)
def test_other_schemes_allowed(uri: str) -> None:
    assert may_complete(uri, "python", SETTINGS) == Verdict(True)


def test_exclude_globs_on_other_schemes() -> None:
    settings = dataclasses.replace(SETTINGS, exclude_globs=("*/vendor/*",))
    verdict = may_complete("vscode-vfs://github/o/r/vendor/lib.py", "python", settings)
    assert verdict == Verdict(False, "lib.py matches excludeGlobs pattern '*/vendor/*'")


@pytest.fixture
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home: no global git config, no global excludes file, unless a test writes one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return home


@pytest.fixture
def excluded_repo(tmp_path: Path, git_home: Path) -> Path:
    root = tmp_path / "work"
    (root / ".git" / "info").mkdir(parents=True)
    (root / ".git" / "info" / "exclude").write_text("# local only\nscratch_*.py\n/notes/\n")
    (git_home / ".config" / "git").mkdir(parents=True)
    (git_home / ".config" / "git" / "ignore").write_text("*.log\n*_local.py\n")
    (root / ".gitignore").write_text("build/\n!build/keep.py\n!keep_local.py\n*.generated.py\n")
    (root / "pkg").mkdir()
    (root / "pkg" / ".gitignore").write_text("!kept.generated.py\n")
    return root


@pytest.mark.parametrize(
    ("relative", "source"),
    [
        pytest.param("main.py", None, id="plain"),
        pytest.param("scratch_1.py", ".git/info/exclude", id="info-exclude"),
        pytest.param("pkg/scratch_2.py", ".git/info/exclude", id="info-exclude-any-depth"),
        pytest.param("notes/todo.py", ".git/info/exclude", id="info-exclude-directory"),
        pytest.param("pkg/notes/todo.py", None, id="info-exclude-anchored"),
        pytest.param("settings_local.py", "the global excludes file (core.excludesFile)",
                     id="global-excludes"),
        pytest.param("keep_local.py", None, id="gitignore-negates-global"),
        pytest.param("build/out.py", ".gitignore", id="ignored-directory"),
        pytest.param("build/keep.py", ".gitignore", id="no-reinclude-inside-ignored-dir"),
        pytest.param("x.generated.py", ".gitignore", id="root-gitignore"),
        pytest.param("pkg/kept.generated.py", None, id="deeper-gitignore-negates"),
        pytest.param("pkg/other.generated.py", ".gitignore", id="deeper-does-not-negate-others"),
    ],
)
def test_git_ignore_sources(excluded_repo: Path, relative: str, source: str | None) -> None:
    path = excluded_repo / relative
    assert ignored_by(path) == source
    expected = Verdict(True) if source is None else Verdict(False, f"{path.name} is ignored by {source}")
    assert may_complete(path.as_uri(), "python", SETTINGS) == expected


def test_xdg_config_home_excludes_file(excluded_repo: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "git").mkdir(parents=True)
    (xdg / "git" / "ignore").write_text("*.draft.py\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert default_excludes_file() == xdg / "git" / "ignore"
    assert ignored_by(excluded_repo / "a.draft.py") == "the global excludes file (core.excludesFile)"
    assert ignored_by(excluded_repo / "settings_local.py") is None  # ~/.config no longer counts


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_core_excludes_file_setting(excluded_repo: Path, git_home: Path) -> None:
    (git_home / "my-ignores").write_text("*.secret.py\n")
    (git_home / ".gitconfig").write_text("[core]\n\texcludesFile = ~/my-ignores\n")
    assert ignored_by(excluded_repo / "db.secret.py") == "the global excludes file (core.excludesFile)"
    assert ignored_by(excluded_repo / "settings_local.py") is None


def test_linked_worktree_reads_the_common_info_exclude(tmp_path: Path, git_home: Path) -> None:
    main = tmp_path / "main"
    (main / ".git" / "info").mkdir(parents=True)
    (main / ".git" / "info" / "exclude").write_text("private_*.py\n")
    (main / ".git" / "worktrees" / "feature").mkdir(parents=True)
    (main / ".git" / "worktrees" / "feature" / "commondir").write_text("../..\n")
    tree = tmp_path / "feature"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {main / '.git' / 'worktrees' / 'feature'}\n")
    assert ignored_by(tree / "private_notes.py") == ".git/info/exclude"
    assert ignored_by(tree / "public.py") is None


def test_global_excludes_need_a_repository(tmp_path: Path, git_home: Path) -> None:
    (git_home / ".config" / "git").mkdir(parents=True)
    (git_home / ".config" / "git" / "ignore").write_text("*.py\n")
    loose = tmp_path / "loose"
    loose.mkdir()
    assert ignored_by(loose / "a.py", root=loose) is None


def test_the_recent_verdict_stands_for_its_period_then_sees_a_new_gitignore(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What asks at every keystroke (start early, completion requests) reads the verdict
    once a period; a rule written meanwhile counts from the next period on."""
    import lsp_server.policy as policy

    now = [1000.0]
    monkeypatch.setattr(policy.time, "monotonic", lambda: now[0])
    uri = (repo / "pkg" / "fresh.py").as_uri()
    assert policy.may_complete_recent(uri, "python", SETTINGS) == Verdict(True)
    (repo / ".gitignore").write_text("fresh.py\n", encoding="utf-8")
    now[0] += policy.RECENT_VERDICT_S / 4
    assert policy.may_complete_recent(uri, "python", SETTINGS) == Verdict(True)  # kept
    assert not may_complete(uri, "python", SETTINGS).allowed  # the rule itself is read
    now[0] += policy.RECENT_VERDICT_S
    assert policy.may_complete_recent(uri, "python", SETTINGS) == Verdict(
        False, "fresh.py is ignored by .gitignore"
    )
