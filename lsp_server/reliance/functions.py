"""Functions of a Python file and the AI-written characters each one holds.

AI characters belong to the innermost function around them; characters outside every
function belong to the module (qualname ``<module>``). Offsets are code points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tree_sitter import Node, Tree

from lsp_server.parsing import syntax
from lsp_server.parsing.region import SyntaxTree
from lsp_server.reliance import spans as sp
from lsp_server.reliance.records import AIRecord
from lsp_server.reliance.spans import Span

MODULE = "<module>"


@dataclass(frozen=True)
class Function:
    qualname: str  # "Class.method", "outer.inner", or "<module>"
    name: str
    class_name: str | None  # the class a method belongs to
    start: int  # the definition, decorators included
    end: int
    name_start: int
    name_end: int
    start_line: int  # 0-based
    end_line: int
    # Inner functions, whose characters are theirs, not this function's.
    nested: tuple[Span, ...] = ()

    @property
    def own_length(self) -> int:
        return (self.end - self.start) - sp.size(self.nested)

    def own(self, spans: Iterable[Span]) -> list[Span]:
        """The parts of ``spans`` in this function and not in an inner one."""
        inside = sp.intersect(spans, self.start, self.end)
        for a, b in self.nested:
            inside = sp.subtract(inside, a, b)
        return inside


class _ByteToChar:
    """Maps UTF-8 byte offsets of a text to code-point offsets."""

    def __init__(self, text: str) -> None:
        self.identity = text.isascii()
        if not self.identity:
            table: list[int] = []
            for index, char in enumerate(text):
                table.extend([index] * len(char.encode("utf-8", errors="surrogatepass")))
            table.append(len(text))
            self.table = table

    def __call__(self, byte: int) -> int:
        if self.identity:
            return byte
        return self.table[min(byte, len(self.table) - 1)]


def functions(text: str, tree: Tree | None = None) -> list[Function]:
    """Every function and method in ``text``, outermost first, with the module last.

    ``tree`` may be the document's up-to-date tree, to save a parse.
    """
    if tree is None:
        tree = syntax.parse_text(text)
    found, tops = _walk(text, tree.root_node.children)
    lines = text.count("\n")
    found.append(Function(MODULE, MODULE, None, 0, len(text), 0, 0, 0, lines, tuple(tops)))
    return found


def functions_around(text: str, tree: SyntaxTree, cursor_byte: int) -> list[Function]:
    """The functions and methods of the top-level statement that starts last before
    ``cursor_byte`` (the one around the cursor, or the one above a cursor on blank lines
    after it) and of one that starts at it, outermost first; no module entry. What a
    request at the cursor needs, without walking the rest of the file: walking all of a
    4,600-line module cost 30-50 ms on the event loop at every code action request (every
    cursor move in VS Code). ``tree`` may be a region tree (:mod:`lsp_server.parsing.region`)."""
    before, at = None, []
    for child in tree.root_node.children:
        if child.start_byte > cursor_byte:
            break
        if child.type == "comment":  # holds no function
            continue
        if child.start_byte < cursor_byte:
            before = child
        else:
            at.append(child)
    roots = ([before] if before is not None else []) + at
    return _walk(text, roots)[0] if roots else []


# (a node, the scope it is in, the class it is directly in, where its spans go)
_Pending = tuple[Node, list[str], str | None, list[Span]]


def _walk(text: str, roots: Sequence[Node]) -> tuple[list[Function], list[Span]]:
    """The functions under ``roots`` (sorted, outermost first) and the spans of the
    outermost ones. A walk with a stack of its own, not recursion: 500 nested ifs
    (hostile input, or generated code) raised RecursionError in every completion
    request."""
    to_char = _ByteToChar(text)
    tops: list[Span] = []
    made: list[tuple[Node, list[str], str, str | None, Span, list[Span]]] = []
    # Only nodes that can hold a definition are pushed: a leaf cannot.
    stack: list[_Pending] = [(c, [], None, tops) for c in reversed(roots) if c.named_child_count]
    while stack:
        node, scope, class_name, owner = stack.pop()
        kind = node.type
        if kind == "function_definition":
            outer = syntax.definition_node(node)
            name, span = _name(node), (to_char(outer.start_byte), to_char(outer.end_byte))
            nested: list[Span] = []
            owner.append(span)
            made.append((node, scope, name, class_name, span, nested))
            inner = [*scope, name]
            stack += [(c, inner, None, nested) for c in reversed(_body_children(node)) if c.named_child_count]
        elif kind == "class_definition":
            name = _name(node)
            inner = [*scope, name]
            stack += [(c, inner, name, owner) for c in reversed(_body_children(node)) if c.named_child_count]
        else:
            stack += [(c, scope, class_name, owner) for c in reversed(node.children) if c.named_child_count]
    found: list[Function] = []
    for node, scope, name, class_name, (start, end), nested in made:
        outer = syntax.definition_node(node)
        name_node = node.child_by_field_name("name")
        found.append(
            Function(
                qualname=".".join([*scope, name]),
                name=name,
                class_name=class_name,
                start=start,
                end=end,
                name_start=to_char(name_node.start_byte) if name_node else start,
                name_end=to_char(name_node.end_byte) if name_node else start,
                start_line=outer.start_point[0],
                end_line=outer.end_point[0],
                nested=tuple(nested),
            )
        )
    found.sort(key=lambda f: (f.start, -f.end))
    return found, tops


def _body_children(definition: Node) -> list[Node]:
    """A definition's body's children."""
    body = definition.child_by_field_name("body")
    return [] if body is None else body.children


def _name(node: Node) -> str:
    name = node.child_by_field_name("name")
    if name is None or name.text is None:
        return "?"
    return name.text.decode("utf-8", errors="replace")


def function_hash(text: str, function: Function) -> str:
    """Hash of a function's own source, to tell whether a test result still applies."""
    return hashlib.sha256(text[function.start : function.end].encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Share:
    """The AI-written characters of one function."""

    function: Function
    unreviewed: tuple[Span, ...]
    reviewed: tuple[Span, ...]
    record_ids: tuple[str, ...]
    models: tuple[str, ...]
    last_accepted: float

    @property
    def ai_chars(self) -> int:
        return sp.size(self.unreviewed) + sp.size(self.reviewed)

    @property
    def unreviewed_chars(self) -> int:
        return sp.size(self.unreviewed)

    @property
    def share(self) -> float:
        length = self.function.own_length
        return self.ai_chars / length if length > 0 else 0.0

    @property
    def ai_range(self) -> Span:
        """From the first to the last AI-written character of the function."""
        both = sp.normalize([*self.unreviewed, *self.reviewed])
        return both[0][0], both[-1][1]


def shares(text: str, records: Iterable[AIRecord], funcs: list[Function] | None = None) -> list[Share]:
    """The AI-written share of every function (and the module) that holds AI code."""
    records = list(records)
    funcs = functions(text) if funcs is None else funcs
    out: list[Share] = []
    for function in funcs:
        unreviewed: list[Span] = []
        reviewed: list[Span] = []
        ids: list[str] = []
        models: list[str] = []
        last = 0.0
        for record in records:
            mine = function.own(record.spans)
            seen = function.own(record.reviewed)
            if not mine and not seen:
                continue
            unreviewed.extend(mine)
            reviewed.extend(seen)
            ids.append(record.id)
            if record.model not in models:
                models.append(record.model)
            last = max(last, record.accepted_at)
        # Whitespace alone (the newline after a body) does not make code AI-written.
        if ids and any(text[a:b].strip() for a, b in [*unreviewed, *reviewed]):
            out.append(
                Share(
                    function,
                    tuple(sp.normalize(unreviewed)),
                    tuple(sp.normalize(reviewed)),
                    tuple(ids),
                    tuple(models),
                    last,
                )
            )
    return out


def lines_of(text: str, spans: Iterable[Span]) -> set[int]:
    """0-based numbers of the lines that hold a non-blank character of ``spans``."""
    out: set[int] = set()
    for a, b in spans:
        piece = text[a:b]
        line = text.count("\n", 0, a)
        for part in piece.split("\n"):
            if part.strip():
                out.add(line)
            line += 1
    return out
