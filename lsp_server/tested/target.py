"""The function a tested suggestion is for, and what checks it (pure)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lsp_server.evaluation import doctests
from lsp_server.evaluation.doctests import Example
from lsp_server.parsing import syntax
from lsp_server.parsing.region import SyntaxTree
from lsp_server.reliance.functions import Function, functions_around
from lsp_server.tested.checks import Checks


@dataclass(frozen=True)
class Target:
    """The innermost function around the cursor, its docstring's examples, and where
    its body starts (the first line after the docstring)."""

    name: str
    qualname: str
    start: int
    end: int
    body_start: int
    examples: tuple[Example, ...]


def function_at(text: str, cursor: int, tree: SyntaxTree | None = None) -> Target | None:
    """The function whose definition holds ``cursor`` (code points), or None. Only the
    top-level statement at the cursor is walked (``tree`` may be a region tree)."""
    if tree is None:
        tree = syntax.parse_text(text)
    cursor_byte = len(text[:cursor].encode("utf-8", errors="surrogatepass"))
    found: Function | None = None
    for function in functions_around(text, tree, cursor_byte):  # no module entry
        # A cursor on blank lines just after a definition is in its (empty) body.
        if function.start <= cursor and (
            cursor <= function.end or not text[function.end:cursor].strip()
        ):
            found = function  # outermost first: the last match is the innermost
    if found is None:
        return None
    docstring, body_start = _docstring(text, found, cursor)
    return Target(found.name, found.qualname, found.start, found.end, body_start,
                  tuple(doctests.examples(docstring, found.name)))


def _docstring(text: str, function: Function, cursor: int) -> tuple[str | None, int]:
    """The function's docstring and the offset where the code after it starts."""
    line_start = text.rfind("\n", 0, cursor) + 1
    for end in (function.end, line_start):
        source = textwrap.dedent(text[function.start:end])
        docstring = doctests.function_docstring(source, function.name)
        if docstring is not None:
            close = _after_docstring(text, function)
            return docstring, close
    return None, _after_docstring(text, function)


def _after_docstring(text: str, function: Function) -> int:
    """The offset of the line after the header and the docstring (if any)."""
    colon = text.find(":\n", function.name_end)
    offset = text.find("\n", colon) + 1 if colon >= 0 else function.end
    rest = text[offset:function.end].lstrip()
    for quote in ('"""', "'''"):
        prefix = rest.split(quote, 1)[0]
        if rest.startswith(quote) or (prefix and prefix.lower() in ("r", "u", "b")):
            start = text.find(quote, offset) + 3
            close = text.find(quote, start)
            if close >= 0:
                return text.find("\n", close) + 1 if text.find("\n", close) >= 0 else len(text)
    return offset


def module_name(relative: str, paths: Sequence[str] = ("",)) -> str:
    """``pkg/mod.py`` -> ``pkg.mod`` (``src/`` layouts: relative to the first of
    ``paths`` that holds it)."""
    pure = PurePosixPath(relative)
    for base in sorted(paths, key=len, reverse=True):
        if base and pure.parts[: len(PurePosixPath(base).parts)] == PurePosixPath(base).parts:
            pure = pure.relative_to(base)
            break
    parts = list(pure.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "candidate"


def checks_for(
    target: Target,
    *,
    root: Path | None = None,
    relative: str | None = None,
    references: Callable[[Sequence[str]], list[str]] | None = None,
) -> Checks:
    """The examples of ``target``, and where the file is in a workspace (``root`` and
    its ``relative`` path), the tests that ``references`` finds for its name."""
    if root is None or relative is None:
        return Checks(name=target.name, examples=target.examples)
    names = [target.name]
    tests = tuple(references(names)) if references is not None else ()
    paths = [str(root)] + ([str(root / "src")] if (root / "src").is_dir() else [])
    module = module_name(relative, ["src"] if (root / "src").is_dir() else [""])
    return Checks(name=target.name, examples=target.examples, tests=tests, module=module,
                  origin=str(root / relative), root=str(root), paths=tuple(paths))
