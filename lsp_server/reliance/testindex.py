"""A static index of the workspace's pytest files: which tests reference which names.

Test files follow pytest's conventions: ``test_*.py``, ``*_test.py``, and every Python
file under a ``tests`` directory (conftest and helpers too: they call code as well).
Each file is parsed with tree-sitter once and again only when it changes (content
hash, or size and mtime when scanning the disk).

A name counts as referenced when it appears as an identifier outside import
statements, definitions' own names, parameters and keyword-argument names: a call,
an attribute (``obj.method``), or a value passed around (``parametrize(.., [f])``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from tree_sitter import Node

from lsp_server.parsing import syntax

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        "env",
        "__pycache__",
        "node_modules",
        "site-packages",
        "build",
        "dist",
        ".ghostpilot",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
MAX_FILE_BYTES = 2_000_000


@lru_cache(maxsize=4096)  # asked at every keystroke in the file
def is_test_file(path: str) -> bool:
    """Whether a workspace-relative posix ``path`` is a pytest file by convention."""
    pure = PurePosixPath(path)
    if pure.suffix != ".py":
        return False
    if fnmatch.fnmatch(pure.name, "test_*.py") or fnmatch.fnmatch(pure.name, "*_test.py"):
        return True
    return "tests" in pure.parts[:-1]


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    nodeid: str  # pytest node id: "tests/test_x.py::TestA::test_b"
    names: frozenset[str]


@dataclass(frozen=True)
class TestFile:
    __test__ = False  # not a pytest class

    path: str
    digest: str
    tests: tuple[TestCase, ...]
    # Names referenced outside any test (fixtures, helpers, parametrize lists).
    module_names: frozenset[str]
    imported_modules: frozenset[str]

    @property
    def all_names(self) -> frozenset[str]:
        names = set(self.module_names)
        for test in self.tests:
            names |= test.names
        return frozenset(names)


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


_NOT_REFERENCES = {
    # (parent type, field name) pairs whose identifier is a binding, not a use.
    ("function_definition", "name"),
    ("class_definition", "name"),
    ("keyword_argument", "name"),
    ("parameters", None),
    ("default_parameter", "name"),
    ("typed_parameter", None),
    ("typed_default_parameter", "name"),
    ("lambda_parameters", None),
}
_IMPORTS = frozenset({"import_statement", "import_from_statement", "future_import_statement"})


def index_text(path: str, text: str) -> TestFile:
    """Parse one test file into the names each test references."""
    tree = syntax.parse_text(text)
    tests: list[TestCase] = []
    module_names: set[str] = set()
    imported: set[str] = set()

    def walk(node: Node, prefix: str, in_test_class: bool) -> None:
        for child in node.children:
            target = child
            if child.type == "decorated_definition":
                definition = child.child_by_field_name("definition")
                module_names.update(_names(n for n in child.children if n.type == "decorator"))
                if definition is None:
                    continue
                target = definition
            if target.type == "function_definition":
                name = _text(target.child_by_field_name("name"))
                if name.startswith("test") and (prefix == "" or in_test_class):
                    tests.append(TestCase(f"{path}::{prefix}{name}", frozenset(_names([target]))))
                else:
                    module_names.update(_names([target]))
            elif target.type == "class_definition":
                name = _text(target.child_by_field_name("name"))
                body = target.child_by_field_name("body")
                superclasses = target.child_by_field_name("superclasses")
                if superclasses is not None:
                    module_names.update(_names([superclasses]))
                if body is not None:
                    walk(body, f"{prefix}{name}::", name.startswith("Test"))
            elif target.type in _IMPORTS:
                imported.update(_imported_modules(target))
            else:
                module_names.update(_names([target]))

    walk(tree.root_node, "", False)
    return TestFile(path, digest_of(text), tuple(tests), frozenset(module_names), frozenset(imported))


def _text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", errors="replace")


def _names(roots: Iterable[Node]) -> set[str]:
    """Identifiers used (not bound by a definition or parameter) under ``roots``."""
    out: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.type in _IMPORTS:
            continue
        if node.type == "identifier":
            parent = node.parent
            field_name = None
            if parent is not None:
                for candidate in ("name", "alias"):
                    if parent.child_by_field_name(candidate) == node:
                        field_name = candidate
                        break
                key = (parent.type, field_name)
                if key in _NOT_REFERENCES or (parent.type, None) in _NOT_REFERENCES:
                    continue
            out.add(_text(node))
            continue
        stack.extend(node.children)
    return out


def _imported_modules(node: Node) -> set[str]:
    out: set[str] = set()
    if node.type == "import_from_statement":
        module = node.child_by_field_name("module_name")
        if module is not None:
            out.add(_text(module).lstrip("."))
    else:
        for child in node.named_children:
            target = child.child_by_field_name("name") if child.type == "aliased_import" else child
            out.add(_text(target))
    return {m for m in out if m}


@dataclass
class TestIndex:
    """Every test file of one workspace, kept up to date file by file."""

    __test__ = False  # not a pytest class

    files: dict[str, TestFile] = field(default_factory=dict)
    _stamps: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Paths whose content comes from an open editor buffer (not re-read from disk).
    _open: set[str] = field(default_factory=set)

    def copy(self) -> TestIndex:
        """A copy to rescan in a thread while this one keeps serving."""
        return TestIndex(dict(self.files), dict(self._stamps), set(self._open))

    def adopt_open(self, current: TestIndex) -> None:
        """Take the editor buffers' entries from ``current`` (edited during a rescan)."""
        self._open = set(current._open)
        for path in self._open:
            if path in current.files:
                self.files[path] = current.files[path]

    def update(self, path: str, text: str, *, from_editor: bool = False) -> bool:
        """Index ``text`` as the content of ``path``; returns whether anything changed."""
        if from_editor:
            self._open.add(path)
        if not is_test_file(path):
            return False
        digest = digest_of(text)
        current = self.files.get(path)
        if current is not None and current.digest == digest:
            return False
        self.files[path] = index_text(path, text)
        return True

    def closed(self, path: str) -> None:
        self._open.discard(path)
        self._stamps.pop(path, None)

    def remove(self, path: str) -> bool:
        self._stamps.pop(path, None)
        self._open.discard(path)
        return self.files.pop(path, None) is not None

    def refresh_file(self, root: Path, path: str) -> bool:
        """Re-read ``path`` from disk (after a watched-file event); returns whether it changed."""
        if path in self._open:
            return False
        full = root / path
        try:
            stat = full.stat()
        except OSError:
            return self.remove(path)
        if not is_test_file(path) or stat.st_size > MAX_FILE_BYTES:
            return self.remove(path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._stamps.get(path) == stamp and path in self.files:
            return False
        try:
            text = full.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return self.remove(path)
        self._stamps[path] = stamp
        return self.update(path, text)

    def scan(self, root: Path) -> bool:
        """Walk the workspace for test files, reading only new or changed ones."""
        seen: set[str] = set()
        changed = False
        for path in walk_test_files(root):
            seen.add(path)
            changed |= self.refresh_file(root, path)
        for gone in [p for p in self.files if p not in seen and p not in self._open]:
            changed |= self.remove(gone)
        return changed

    def references(self, names: Iterable[str]) -> list[str]:
        """Node ids of tests (or whole files, by path) that reference any of ``names``."""
        wanted = set(names)
        out: list[str] = []
        for path in sorted(self.files):
            file = self.files[path]
            if file.module_names & wanted:
                out.append(path)
                continue
            out.extend(test.nodeid for test in file.tests if test.names & wanted)
        return out

    def digests(self, paths: Iterable[str]) -> dict[str, str]:
        return {p: self.files[p].digest for p in paths if p in self.files}


def walk_test_files(root: Path) -> Iterator[str]:
    """Workspace-relative posix paths of the test files under ``root``."""
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS
            and not d.startswith(".")
            and not os.path.exists(os.path.join(directory, d, "pyvenv.cfg"))
        )
        relative = os.path.relpath(directory, root)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = name if relative == "." else f"{relative}/{name}".replace(os.sep, "/")
            if is_test_file(path):
                yield path
