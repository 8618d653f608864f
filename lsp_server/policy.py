"""Which documents may be completed and read for prompts.

Secrets never reach a prompt: ``.env*``, ``*.pem``, ``*.key`` (``neverReadGlobs``) are
matched on the path of a document of any URI scheme (``file:``, ``untitled:``,
``vscode-vfs://github/owner/repo/.env``, ...), and with ``respectGitignore`` whatever
git ignores is never read: the ``.gitignore`` files from the repository's top down to
the file, ``.git/info/exclude`` and the global excludes file (``core.excludesFile``,
by default ``$XDG_CONFIG_HOME/git/ignore`` or ``~/.config/git/ignore``), with git's
precedence (the last matching pattern wins, a deeper ``.gitignore`` over a higher one
over ``info/exclude`` over the global file) and git's rule that nothing inside an
ignored directory can be re-included.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import pathspec

from lsp_server.config import Settings

# How long an answer of may_complete_recent() stands.
RECENT_VERDICT_S = 2.0


def uri_to_path(uri: str) -> Path | None:
    """The file-system path of a ``file:`` URI or a bare path; None for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        return None
    return Path(unquote(parsed.path))


def uri_path(uri: str) -> PurePosixPath | None:
    """The path part of a URI of any scheme, as ``/``-separated text (None if it has
    none): ``untitled:.env`` -> ``.env``, ``vscode-vfs://github/o/r/.env`` -> ``/o/r/.env``.

    Backslashes count as separators too: for never-read rules, matching a name too
    eagerly is the safe mistake.
    """
    parsed = urlparse(uri)
    path = unquote(parsed.path).replace("\\", "/")
    if not path.strip("/"):
        return None
    return PurePosixPath(path)


def _matches(path: PurePosixPath, patterns: tuple[str, ...]) -> str | None:
    for pattern in patterns:
        if fnmatch.fnmatch(path.name, pattern) or fnmatch.fnmatch(str(path), pattern):
            return pattern
    return None


# --- git's ignore rules -------------------------------------------------------------


@dataclass(frozen=True)
class _Rules:
    """One source of ignore patterns: the directory they are relative to, and them."""

    base: Path
    spec: pathspec.GitIgnoreSpec
    source: str  # how a verdict names it: ".gitignore", ".git/info/exclude", ...


@lru_cache(maxsize=512)
def _spec(file: str, mtime_ns: int, size: int) -> pathspec.GitIgnoreSpec | None:
    del mtime_ns, size  # part of the cache key only
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
    except ValueError:  # a malformed pattern: git would skip the line; skip the line here
        spec = pathspec.GitIgnoreSpec.from_lines(_valid_lines(lines))
    return spec if len(spec) else None


def _valid_lines(lines: Sequence[str]) -> list[str]:
    valid = []
    for line in lines:
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except ValueError:
            continue
        valid.append(line)
    return valid


def _rules(file: Path, base: Path, source: str) -> _Rules | None:
    try:
        info = file.stat()
    except OSError:
        return None
    spec = _spec(str(file), info.st_mtime_ns, info.st_size)
    return _Rules(base, spec, source) if spec is not None else None


def _git_dir(top: Path) -> Path | None:
    """The directory holding ``info/exclude`` for the work tree ``top``: ``.git``, or
    for a linked work tree or submodule (``.git`` is a file) the common git dir."""
    dot_git = top / ".git"
    if dot_git.is_dir():
        return dot_git
    try:
        first = dot_git.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    if not first.startswith("gitdir:"):
        return None
    git_dir = (top / first[len("gitdir:"):].strip()).resolve()
    try:
        common = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return git_dir
    return (git_dir / common).resolve()


def default_excludes_file(env: dict[str, str] | None = None) -> Path:
    """git's global excludes file when ``core.excludesFile`` is not set."""
    env = dict(os.environ) if env is None else env
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg:
        return Path(xdg, "git", "ignore")
    return Path(env.get("HOME", str(Path.home())), ".config", "git", "ignore")


def _config_stamp(git_dir: Path | None) -> tuple[tuple[str, int], ...]:
    """The modification times of the git config files that can set core.excludesFile."""
    home = Path(os.environ.get("HOME", str(Path.home())))
    xdg = os.environ.get("XDG_CONFIG_HOME", "") or str(home / ".config")
    files = [home / ".gitconfig", Path(xdg, "git", "config"), Path("/etc/gitconfig")]
    if git_dir is not None:
        files.append(git_dir / "config")
    stamp = []
    for file in files:
        try:
            stamp.append((str(file), file.stat().st_mtime_ns))
        except OSError:
            stamp.append((str(file), 0))
    return tuple(stamp)


@lru_cache(maxsize=64)
def _excludes_file(top: str, stamp: tuple[tuple[str, int], ...],
                   env_key: tuple[str, str]) -> str:
    del stamp, env_key  # part of the cache key only
    git = shutil.which("git")
    if git is not None:
        try:
            done = subprocess.run(
                [git, "-C", top, "config", "--path", "--get", "core.excludesFile"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=5,
            )
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.strip():
            value = Path(done.stdout.strip()).expanduser()
            return str(value if value.is_absolute() else Path(top, value))
    return str(default_excludes_file())


def excludes_file(top: Path) -> Path:
    """The global excludes file git uses for the work tree ``top``."""
    env_key = (os.environ.get("HOME", ""), os.environ.get("XDG_CONFIG_HOME", ""))
    return Path(_excludes_file(str(top), _config_stamp(_git_dir(top)), env_key))


def _ignore_rules(path: Path, root: Path | None) -> tuple[list[_Rules], Path | None]:
    """Every rule source that applies to ``path``, lowest precedence first, and the
    repository's top (None outside a repository: then every ``.gitignore`` up to
    ``root`` or ``/`` counts, and nothing else)."""
    gitignores: list[_Rules] = []
    top: Path | None = None
    directory = path.parent
    while True:
        found = _rules(directory / ".gitignore", directory, ".gitignore")
        if found is not None:
            gitignores.append(found)
        if (directory / ".git").exists():
            top = directory
            break
        if (root is not None and directory == root) or directory.parent == directory:
            break
        directory = directory.parent
    gitignores.reverse()
    if top is None:
        return gitignores, None
    repo_wide: list[_Rules] = []
    glob = _rules(excludes_file(top), top, "the global excludes file (core.excludesFile)")
    if glob is not None:
        repo_wide.append(glob)
    git_dir = _git_dir(top)
    if git_dir is not None:
        exclude = _rules(git_dir / "info" / "exclude", top, ".git/info/exclude")
        if exclude is not None:
            repo_wide.append(exclude)
    return repo_wide + gitignores, top


def _verdict(target: Path, is_dir: bool, rules: Sequence[_Rules]) -> _Rules | None:
    """The rule source whose last matching pattern ignores ``target`` (None when no
    pattern matches, or the last one that does re-includes it)."""
    decided: tuple[bool, _Rules] | None = None
    for source in rules:
        try:
            relative = target.relative_to(source.base).as_posix()
        except ValueError:
            continue
        if relative == ".":
            continue
        if is_dir:
            relative += "/"
        include = source.spec.check_file(relative).include
        if include is not None:
            decided = (include, source)
    return decided[1] if decided is not None and decided[0] else None


def ignored_by(path: Path, root: Path | None = None) -> str | None:
    """Which git rule source ignores ``path`` (``".gitignore"``, ``".git/info/exclude"``,
    the global excludes file), or None. Inside an ignored directory everything is
    ignored, as git never looks inside it."""
    rules, top = _ignore_rules(path, root)
    if not rules:
        return None
    start = top if top is not None else rules[0].base
    try:
        parts = path.parent.relative_to(start).parts
    except ValueError:
        parts = ()
    directory = start
    for part in parts:
        directory = directory / part
        source = _verdict(directory, True, rules)
        if source is not None:
            return source.source
    source = _verdict(path, False, rules)
    return source.source if source is not None else None


def gitignored(path: Path, root: Path | None = None) -> bool:
    """Whether git's ignore rules (any source) ignore ``path``."""
    return ignored_by(path, root) is not None


# --- the verdict --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


def _secret(path: PurePosixPath, settings: Settings) -> Verdict | None:
    pattern = _matches(path, settings.never_read_globs)
    if pattern:
        return Verdict(False, f"{path.name} matches neverReadGlobs pattern {pattern!r}")
    return None


def _git_ignored(uri: str, settings: Settings) -> Verdict | None:
    on_disk = uri_to_path(uri)
    if settings.respect_gitignore and on_disk is not None and on_disk.is_absolute():
        source = ignored_by(on_disk)
        if source is not None:
            return Verdict(False, f"{on_disk.name} is ignored by {source}")
    return None


def may_complete(uri: str, language_id: str, settings: Settings) -> Verdict:
    """Whether this document gets suggestions (and may be read for prompts)."""
    if not settings.enable:
        return Verdict(False, "suggestions are turned off (ghostpilot.enable)")
    if language_id not in settings.enabled_languages:
        return Verdict(False, f"language {language_id!r} is not in enabledLanguages")
    path = uri_path(uri)
    if path is None:
        return Verdict(True)
    secret = _secret(path, settings)
    if secret:
        return secret
    excluded = _matches(path, settings.exclude_globs)
    if excluded:
        return Verdict(False, f"{path.name} matches excludeGlobs pattern {excluded!r}")
    return _git_ignored(uri, settings) or Verdict(True)


def may_complete_recent(uri: str, language_id: str, settings: Settings) -> Verdict:
    """:func:`may_complete` as answered within the last :data:`RECENT_VERDICT_S` for the
    same arguments: for what asks at every keystroke (start early, completion requests),
    where walking up the directories for ``.gitignore`` files cost more than applying
    the edit. A change to an ignore file reaches these answers within that time."""
    return _recent_verdict(uri, language_id, settings, int(time.monotonic() // RECENT_VERDICT_S))


@lru_cache(maxsize=256)
def _recent_verdict(uri: str, language_id: str, settings: Settings, period: int) -> Verdict:
    del period  # part of the cache key only
    return may_complete(uri, language_id, settings)


def may_read(uri: str, settings: Settings) -> Verdict:
    """Whether the text of ``uri`` may reach the model at all: the never-read rules
    (``neverReadGlobs``; git's ignore rules while ``respectGitignore`` is on). For what
    the user asks of one file (a docstring) and for files read for context (the
    project's docstring style); suggestions as you type also need :func:`may_complete`."""
    path = uri_path(uri)
    if path is None:
        return Verdict(True)
    return _secret(path, settings) or _git_ignored(uri, settings) or Verdict(True)


def path_reader(settings: Settings) -> Callable[[Path], bool]:
    """Whether a file on disk may be read for context (a project's docstring style): the
    never-read rules of :func:`may_read`."""
    return lambda path: may_read(path.as_uri(), settings).allowed
