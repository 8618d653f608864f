"""Standalone, documented functions from Python source, in the Codex prompt format.

A function is *standalone* when everything it names outside itself is a builtin or a
module-level import of the standard library: it can be cut out of its file, with
those imports, and still run. Scoping is Python's own (:mod:`symtable`), so nested
functions, comprehensions and ``global`` statements are judged exactly.

Each kept function becomes a :class:`Candidate` whose ``prompt`` is what Codex and
HumanEval give a model (imports, signature, docstring) and whose ``body`` is what the
model should write. Every rejection has a reason, so the build can count each filter.
"""

from __future__ import annotations

import ast
import builtins
import io
import symtable
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass

# Reasons, in the order the filters apply (the data card lists them in this order).
REJECT_KIND = "not module-level or staticmethod"
REJECT_ASYNC = "async"
REJECT_DECORATED = "decorated"
REJECT_NO_DOCSTRING = "no docstring"
REJECT_LAYOUT = "layout (one-liner, odd indentation, tabs)"
REJECT_TRIVIAL = "trivial body (pass, ..., raise NotImplementedError)"
REJECT_NOT_STANDALONE = "not standalone (names beyond builtins and stdlib imports)"
REJECT_NO_EXAMPLES = "no >>> example with an expected output"
REJECT_ORDER = (REJECT_KIND, REJECT_ASYNC, REJECT_DECORATED, REJECT_NO_DOCSTRING,
                REJECT_LAYOUT, REJECT_TRIVIAL, REJECT_NOT_STANDALONE, REJECT_NO_EXAMPLES)

_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("__")) | {"__debug__",
                                                                            "__import__"}
# Standard-library modules a kept function may import. Private (_x) modules and the
# test package are CPython internals, not what users write.
_STDLIB = frozenset(m for m in sys.stdlib_module_names
                    if not m.startswith("_") and m not in ("test", "idlelib", "antigravity",
                                                           "this")) | {"__future__"}


def is_stdlib_module(dotted: str | None, level: int = 0) -> bool:
    """Whether ``import dotted`` (absolute) names a standard-library module."""
    if level or not dotted:
        return False
    return dotted.split(".")[0] in _STDLIB


@dataclass(frozen=True)
class Candidate:
    """One standalone function: where it came from and its prompt/body split."""

    source: str  # "stdlib" or the PyPI project name
    path: str  # file path inside the source
    qualname: str  # "name" or "Class.name" for a staticmethod
    lineno: int
    imports: str  # import lines the function needs, "" if none
    signature: str  # the def line(s), dedented to column 0
    docstring_block: str  # the docstring's lines as written (indented)
    body: str  # the lines after the docstring, ending in "\n"
    docstring: str  # the cleaned docstring (what doctest parses)

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    @property
    def prompt(self) -> str:
        """Imports, signature and docstring: what the model is given (Codex format)."""
        head = self.imports + "\n\n\n" if self.imports else ""
        return head + self.signature + self.docstring_block

    @property
    def code(self) -> str:
        """The whole function (with its imports), as a module that defines it."""
        return self.prompt + self.body


@dataclass(frozen=True)
class Rejected:
    source: str
    path: str
    qualname: str
    reason: str


def extract(source_text: str, *, source: str, path: str) -> Iterator[Candidate | Rejected]:
    """Every module-level function and method in ``source_text``, kept or with a reason.

    Files that do not parse (Python 2, templates) yield nothing.
    """
    try:
        tree = ast.parse(source_text)
        table = symtable.symtable(source_text, path, "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    lines = source_text.splitlines(keepends=True)
    imports = _module_imports(tree)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield _judge(node, None, table, lines, imports, source, path)
        elif isinstance(node, ast.ClassDef):
            class_table = _child(table, node.name, node.lineno, "class")
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield _judge(item, node.name, class_table, lines, imports, source, path)


def _judge(node: ast.FunctionDef | ast.AsyncFunctionDef, class_name: str | None,
           parent: symtable.SymbolTable | None, lines: list[str],
           imports: dict[str, ast.Import | ast.ImportFrom], source: str,
           path: str) -> Candidate | Rejected:
    qualname = f"{class_name}.{node.name}" if class_name else node.name

    def reject(reason: str) -> Rejected:
        return Rejected(source, path, qualname, reason)

    decorators = [ast.unparse(d) for d in node.decorator_list]
    if class_name is not None and "staticmethod" not in decorators:
        return reject(REJECT_KIND)
    if isinstance(node, ast.AsyncFunctionDef):
        return reject(REJECT_ASYNC)
    if [d for d in decorators if d != "staticmethod"] or (class_name is None and decorators):
        return reject(REJECT_DECORATED)
    docstring = ast.get_docstring(node, clean=True)
    if not docstring:
        return reject(REJECT_NO_DOCSTRING)
    parts = _split(node, lines)
    if parts is None:
        return reject(REJECT_LAYOUT)
    signature, docstring_block, body = parts
    if _trivial(node.body[1:]):
        return reject(REJECT_TRIVIAL)
    table = _child(parent, node.name, node.lineno, "function") if parent else None
    needed = _needed_imports(node, table, imports)
    if needed is None:
        return reject(REJECT_NOT_STANDALONE)
    from lsp_server.evaluation.doctests import examples  # torch-free, stdlib-only

    if not examples(docstring):
        return reject(REJECT_NO_EXAMPLES)
    return Candidate(source, path, qualname, node.lineno, needed, signature,
                     docstring_block, body, docstring)


def _split(node: ast.FunctionDef, lines: list[str]) -> tuple[str, str, str] | None:
    """(signature, docstring lines, body lines), dedented by the def's column; None
    unless the docstring and the body each start on lines of their own and the body is
    indented by four spaces."""
    doc = node.body[0]
    if len(node.body) < 2 or doc.end_lineno is None or node.end_lineno is None:
        return None
    first, rest = node.body[1], node.lineno
    if doc.lineno <= rest or first.lineno <= doc.end_lineno:
        return None
    indent = node.col_offset
    chunk = lines[rest - 1:node.end_lineno]
    if any(line.strip() and line[:indent].strip() for line in chunk):
        return None
    chunk = [line[indent:] if line.strip() else line.lstrip(" \t") for line in chunk]
    if any(line.startswith("\t") or "\t" in line[:len(line) - len(line.lstrip())]
           for line in chunk):
        return None
    offset = doc.lineno - rest
    signature = "".join(chunk[:offset])
    docstring_block = "".join(chunk[offset:doc.end_lineno - rest + 1])
    body = "".join(chunk[doc.end_lineno - rest + 1:])
    if not docstring_block.startswith("    ") or docstring_block.startswith("     "):
        return None
    if not signature.startswith("def ") or not body.strip():
        return None
    if _code_after(lines[doc.end_lineno - 1], doc.end_col_offset):
        return None
    body_lines = [line for line in body.splitlines() if line.strip()]
    if not body_lines[0].startswith("    ") or body_lines[0].startswith("     "):
        return None
    if not body.endswith("\n"):
        body += "\n"
    return signature, docstring_block, body


def _code_after(line: str, col: int | None) -> bool:
    """Whether anything but a comment follows the docstring on its last line."""
    tail = line.encode("utf-8")[col or 0:].decode("utf-8", "replace").strip()
    return bool(tail) and not tail.startswith("#")


def _trivial(body: list[ast.stmt]) -> bool:
    if len(body) != 1:
        return False
    stmt = body[0]
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        target = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(target, ast.Name) and target.id == "NotImplementedError"
    return False


def _module_imports(tree: ast.Module) -> dict[str, ast.Import | ast.ImportFrom]:
    """Name -> the unconditional module-level import that binds it (last one wins)."""
    bound: dict[str, ast.Import | ast.ImportFrom] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                name = alias.asname or alias.name.split(".")[0]
                bound[name] = ast.Import(names=[alias])
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if alias.name != "*":
                    bound[alias.asname or alias.name] = ast.ImportFrom(
                        module=stmt.module, names=[alias], level=stmt.level)
        elif isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.FunctionDef,
                               ast.AsyncFunctionDef, ast.ClassDef)):
            # A later module-level binding of the same name shadows the import.
            for name in _bound_names(stmt):
                bound.pop(name, None)
    return bound


def _bound_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        targets = [stmt.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _import_ok(stmt: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(stmt, ast.Import):
        return all(is_stdlib_module(a.name) for a in stmt.names)
    return is_stdlib_module(stmt.module, stmt.level)


def _needed_imports(node: ast.FunctionDef, table: symtable.SymbolTable | None,
                    imports: dict[str, ast.Import | ast.ImportFrom]) -> str | None:
    """The import lines that make ``node`` standalone, or None if it is not."""
    if table is None:
        return None
    names = _global_names(table)
    if names is None:
        return None
    # Decorators, defaults and annotations are evaluated in the module's scope.
    outer: list[ast.AST] = [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
    for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                node.args.vararg, node.args.kwarg]:
        if arg is not None and arg.annotation is not None:
            outer.append(arg.annotation)
    if node.returns is not None:
        outer.append(node.returns)
    for expr in outer:
        names |= {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
    for inner in ast.walk(node):
        if isinstance(inner, (ast.Import, ast.ImportFrom)) and not _import_ok(inner):
            return None
    needed: list[ast.Import | ast.ImportFrom] = []
    for name in sorted(names):
        if name in imports:
            stmt = imports[name]
            if not _import_ok(stmt):
                return None
            needed.append(stmt)
        elif name not in _BUILTINS:
            return None
    future = [s for s in needed if isinstance(s, ast.ImportFrom) and s.module == "__future__"]
    ordered = future + [s for s in needed if s not in future]
    return "\n".join(dict.fromkeys(ast.unparse(s) for s in ordered))


def _global_names(table: symtable.SymbolTable) -> set[str] | None:
    """Module-level names the function (and everything nested in it) reads; None if
    it declares a ``global`` (it writes module state: not standalone)."""
    found: set[str] = set()
    for symbol in table.get_symbols():
        if symbol.is_declared_global():
            return None
        if symbol.is_global() and (symbol.is_referenced() or symbol.is_assigned()):
            found.add(symbol.get_name())
    for child in table.get_children():
        inner = _global_names(child)
        if inner is None:
            return None
        found |= inner
    return found


def _child(table: symtable.SymbolTable | None, name: str, lineno: int,
           kind: str) -> symtable.SymbolTable | None:
    if table is None:
        return None
    for child in table.get_children():
        if child.get_name() == name and child.get_lineno() == lineno and \
                child.get_type().lower() == kind:
            return child
    return None


def strip_comments(code: str) -> str:
    """``code`` without comments (for duplicate detection)."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                tokenize.INDENT, tokenize.DEDENT):
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return " ".join(code.split())
    return " ".join(out)
