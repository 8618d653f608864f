"""Which documents may be completed and read for prompts.

Secrets never reach a prompt: ``.env*``, ``*.pem``, ``*.key`` (configurable) and
whatever the workspace's ``.gitignore`` files ignore are never read.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

import pathspec

from lsp_server.config import Settings


def uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        return None
    return Path(unquote(parsed.path))


def _matches(path: Path, patterns: tuple[str, ...]) -> str | None:
    for pattern in patterns:
        if fnmatch.fnmatch(path.name, pattern) or fnmatch.fnmatch(str(path), pattern):
            return pattern
    return None


@lru_cache(maxsize=256)
def _gitignore(directory: str, mtime: float) -> pathspec.PathSpec | None:
    del mtime  # part of the cache key only
    try:
        lines = Path(directory, ".gitignore").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines)


def gitignored(path: Path, root: Path | None = None) -> bool:
    """Whether a ``.gitignore`` between ``path`` and the repository root ignores it."""
    directory = path.parent
    while True:
        ignore = directory / ".gitignore"
        try:
            mtime = ignore.stat().st_mtime
        except OSError:
            mtime = None
        if mtime is not None:
            spec = _gitignore(str(directory), mtime)
            if spec is not None:
                relative = path.relative_to(directory).as_posix()
                if spec.match_file(relative):
                    return True
        if (directory / ".git").exists() or (root is not None and directory == root):
            return False
        if directory.parent == directory:
            return False
        directory = directory.parent


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


def may_complete(uri: str, language_id: str, settings: Settings) -> Verdict:
    """Whether this document gets suggestions (and may be read for prompts)."""
    if not settings.enable:
        return Verdict(False, "suggestions are turned off (ghostpilot.enable)")
    if language_id not in settings.enabled_languages:
        return Verdict(False, f"language {language_id!r} is not in enabledLanguages")
    path = uri_to_path(uri)
    if path is None:
        return Verdict(True)
    secret = _matches(path, settings.never_read_globs)
    if secret:
        return Verdict(False, f"{path.name} matches neverReadGlobs pattern {secret!r}")
    excluded = _matches(path, settings.exclude_globs)
    if excluded:
        return Verdict(False, f"{path.name} matches excludeGlobs pattern {excluded!r}")
    if settings.respect_gitignore and os.path.isabs(path) and gitignored(path):
        return Verdict(False, f"{path.name} is ignored by .gitignore")
    return Verdict(True)
