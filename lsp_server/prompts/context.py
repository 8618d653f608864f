"""Function-level prompt context, as in the Codex paper.

From a document and a cursor, collect:
1. the module's imports;
2. an outline of the file (its top-level signatures), for files with many definitions;
3. the enclosing class header and all its members' signatures;
4. the signatures and docstrings of the file's functions and classes that the current
   code uses;
5. the current function from its ``def`` line (with decorators) to the cursor.

Pieces come in that order, from what is the same for the whole file to what changes at
every keystroke: typing reuses the KV cache of everything before the cursor line, and
moving to another function (of the same class) re-evaluates only the pieces from 4 on.
Everything here is a pure function of (source bytes, tree, cursor byte offset).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple

from tree_sitter import Node

from lsp_server.parsing import syntax
from lsp_server.parsing.region import SyntaxTree, members_after
from lsp_server.parsing.syntax import ancestors, definition_node

IMPORT_TYPES = frozenset({"import_statement", "import_from_statement", "future_import_statement"})
DEF_TYPES = frozenset({"function_definition", "class_definition"})
BLOCK_HEADER = re.compile(
    r"^\s*(async\s+)?(def|class|if|elif|else|for|while|with|try|except|finally|match|case)\b.*:\s*(#.*)?$"
)
_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
MAX_MODULE_LINES = 80
MAX_SUFFIX_LINES = 40
MAX_MEMBERS = 40
# A file with at least this many top-level definitions gets an outline at the prompt's
# head (smaller files fit the prompt, and their used definitions are there anyway).
OUTLINE_MIN_DEFINITIONS = 8
MAX_OUTLINE_ENTRIES = 200


def indent_width(line: str) -> int:
    stripped = line.lstrip(" \t")
    return len(line[: len(line) - len(stripped)].expandtabs(8))


def leading_ws(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


@dataclass(frozen=True)
class PromptContext:
    imports: str
    definitions: tuple[str, ...]
    scope_header: str
    current: str
    suffix: str
    # Indentation of the line that opened the block being written ("" at module level).
    block_indent: str
    # Indentation of the current function's ``def`` (stop sequences apply at it).
    function_indent: str
    in_function: bool
    # Top-level signatures of the whole file, one a line ("" for small files).
    outline: str = ""
    # Fit the class header to a few tokens (budget.BRIEF_HEADER_TOKENS): an editor's first
    # requests in a class not met before, until the user pauses (prompts/held.py).
    brief_header: bool = False

    def pieces(self) -> list[str]:
        """Non-empty pieces in prompt order (stable first)."""
        head = [p for p in (self.imports, self.outline, self.scope_header, *self.definitions) if p]
        return head + [self.current]


def _line_bounds(source: bytes, offset: int) -> tuple[int, int]:
    start = source.rfind(b"\n", 0, offset) + 1
    end = source.find(b"\n", offset)
    return start, len(source) if end < 0 else end


def _text(source: bytes, start: int, end: int) -> str:
    return source[start:end].decode("utf-8", errors="replace")


def cursor_indent(source: bytes, cursor: int) -> int:
    """Indentation width that the cursor's line has (or will have, on a blank prefix)."""
    start, end = _line_bounds(source, cursor)
    before = _text(source, start, cursor)
    if not before.strip():
        return len(before.expandtabs(8))
    return indent_width(_text(source, start, end))


def _last_code_byte(source: bytes, cursor: int) -> int:
    position = cursor
    while position > 0 and source[position - 1 : position] in (b" ", b"\t", b"\r", b"\n"):
        position -= 1
    return position - 1


def _body_is_empty(node: Node) -> bool:
    """True for a definition whose body holds nothing but (at most) a docstring."""
    body = node.child_by_field_name("body")
    if body is None:
        return True
    statements = [c for c in body.named_children if c.type != "comment"]
    if not statements:
        return True
    if len(statements) == 1 and statements[0].type == "expression_statement":
        first = statements[0].named_children
        return bool(first) and first[0].type == "string"
    return False


def enclosing_definitions(tree: SyntaxTree, source: bytes, cursor: int) -> list[Node]:
    """Function and class definitions that enclose the cursor, innermost first.

    A definition encloses the cursor when the cursor is on its header line, or deeper
    indented than its ``def``/``class`` line, or on a blank line that the definition's
    body goes on past, or just after a definition whose body holds only a docstring (a
    HumanEval prompt ends so: the body comes next).
    """
    last = _last_code_byte(source, cursor)
    if last < 0:
        return []
    node = tree.root_node.descendant_for_byte_range(last, last)
    width = cursor_indent(source, cursor)
    cursor_row = source.count(b"\n", 0, cursor)
    line_text = _text(source, *_line_bounds(source, cursor))
    blank_line = not line_text.strip()
    if blank_line:  # a cursor at the start of an indented blank line has that indentation
        width = max(width, indent_width(line_text))
    result: list[Node] = []
    for candidate in ancestors(node):
        if candidate.type not in DEF_TYPES:
            continue
        row = candidate.start_point.row
        line_start, line_end = _line_bounds(source, candidate.start_byte)
        def_width = indent_width(_text(source, line_start, line_end))
        header_end = candidate.child_by_field_name("body")
        on_header = row <= cursor_row and (
            header_end is None or cursor <= header_end.start_byte or cursor_row == row
        )
        blank_prefix = not _text(source, _line_bounds(source, cursor)[0], cursor).strip()
        if width > def_width or on_header:
            result.append(candidate)
        elif blank_line and candidate.start_byte < cursor < candidate.end_byte:
            result.append(candidate)  # a blank line between statements of its body
        elif not result and blank_prefix and _body_is_empty(candidate):
            result.append(candidate)
    return result


def _header_text(node: Node, source: bytes) -> str:
    """Decorators and signature of a definition, up to and including its colon."""
    outer = definition_node(node)
    body = node.child_by_field_name("body")
    end = body.start_byte if body is not None else node.end_byte
    header = _text(source, outer.start_byte, end).rstrip()
    line_start = source.rfind(b"\n", 0, outer.start_byte) + 1
    return _text(source, line_start, outer.start_byte) + header


def _first_named(node: Node | None) -> Node | None:
    """``node``'s first named child, or None: without the ``named_children`` list, which
    makes a node object for every statement of a body (a class header reads the first
    statement of each of up to 40 members at every request)."""
    return node.named_child(0) if node is not None and node.named_child_count else None


def _docstring(node: Node, source: bytes) -> str:
    first = _first_named(node.child_by_field_name("body"))
    if first is None:
        return ""
    if first.type == "expression_statement":
        string = _first_named(first)
        if string is not None and string.type == "string":
            line_start = source.rfind(b"\n", 0, first.start_byte) + 1
            return _text(source, line_start, first.end_byte)
    return ""


def _body_indent(node: Node, source: bytes) -> str:
    first = _first_named(node.child_by_field_name("body"))
    if first is not None:
        first_start = first.start_byte
        line_start = source.rfind(b"\n", 0, first_start) + 1
        lead = _text(source, line_start, first_start)
        if not lead.strip():  # a body on its own line; not ``def f(): return 1``
            return lead
    line_start = source.rfind(b"\n", 0, node.start_byte) + 1
    return leading_ws(_text(source, line_start, node.start_byte + 1)) + "    "


def stub(node: Node, source: bytes, *, with_members: bool = True) -> str:
    """Signature, docstring and ``...``; for a class, also its members' stubs."""
    parts = [_header_text(node, source)]
    doc = _docstring(node, source)
    if doc:
        parts.append(doc)
    if node.type == "class_definition" and with_members:
        members = _class_members(node, source, exclude=None)
        parts.extend(members)
        if not doc and not members:
            parts.append(_body_indent(node, source) + "...")
    else:
        parts.append(_body_indent(node, source) + "...")
    return "\n".join(parts)


def _class_members(node: Node, source: bytes, exclude: Node | None, tail: Iterable[Node] = ()) -> list[str]:
    body = node.child_by_field_name("body")
    if body is None:
        return []
    members: list[str] = []
    for child in chain(body.named_children, (member for member in tail if member.is_named)):
        inner = child
        if child.type == "decorated_definition":
            inner = child.child_by_field_name("definition") or child
        if exclude is not None and (inner == exclude or child == exclude):
            continue
        if inner.type == "function_definition":
            members.append(_header_text(inner, source) + "\n" + _body_indent(inner, source) + "...")
        elif inner.type == "class_definition":
            members.append(stub(inner, source, with_members=False))
        elif inner.type == "expression_statement" and not _is_docstring(inner, body):
            text = _text(source, inner.start_byte, inner.end_byte)
            if "\n" not in text and len(text) < 120:
                line_start = source.rfind(b"\n", 0, inner.start_byte) + 1
                members.append(_text(source, line_start, inner.end_byte))
        if len(members) >= MAX_MEMBERS:
            break
    return members


def _is_docstring(statement: Node, body: Node) -> bool:
    if statement != _first_named(body):
        return False
    string = _first_named(statement)
    return string is not None and string.type == "string"


def class_header(node: Node, source: bytes, exclude: Node | None, tail: Iterable[Node] = ()) -> str:
    """The class's header, docstring, fields and other methods' signatures; ``tail``: its
    members after a request's region, where the region's parse of the class ends before
    them (:func:`lsp_server.parsing.region.members_after`)."""
    parts = [_header_text(node, source)]
    doc = _docstring(node, source)
    if doc:
        parts.append(doc)
    parts.extend(_class_members(node, source, exclude, tail))
    return "\n".join(parts)


_CLASS_LINE = re.compile(r"^[ \t]*class\b.*$", re.MULTILINE)


def class_line(header: str) -> str:
    """The ``class`` line of a class header (below its decorators); "" where it has none."""
    found = _CLASS_LINE.search(header)
    return found.group(0) if found else ""


_CLASS_START = re.compile(rb"class\b")


def _width(line: bytes) -> int:
    return indent_width(line.decode("utf-8", errors="replace"))


def class_header_by_indentation(source: bytes, method_start: int) -> str:
    """The header of the top-level class that the indented definition at byte
    ``method_start`` is in, found by indentation and parsed on its own ("" where there is
    none).

    A body being typed elsewhere in the file can fold the structure around the cursor
    into an ERROR node, so that the tree has no class around a method (seen on
    argparse.py in the jump replay: a first visit got no class header, and the return,
    with the class back, evaluated the whole prompt again). The class's own text parses
    as it would in a clean file."""
    line_start = source.rfind(b"\n", 0, method_start) + 1
    indent = _width(source[line_start:method_start])
    if indent == 0:
        return ""
    position, start = line_start, None
    while position > 0:  # up to the nearest line indented less than the method
        above = source.rfind(b"\n", 0, position - 1) + 1
        line = source[above : position - 1]
        stripped = line.strip()
        position = above
        if stripped and not stripped.startswith(b"#") and _width(line) < indent:
            if _width(line) == 0 and _CLASS_START.match(stripped):
                start = above
            break
    if start is None:
        return ""  # in a function or a block, or a nested class: not this fallback
    end = source.find(b"\n", start)
    while end >= 0:  # down to the next line at column 0 that is code
        following = source.find(b"\n", end + 1)
        line = source[end + 1 : following if following >= 0 else len(source)]
        if line.strip() and _width(line) == 0 and not line.startswith(b"#"):
            break
        end = following
    text = source[start : end if end >= 0 else len(source)]
    tree = syntax.parse(text)
    node = next((child for child in tree.root_node.named_children if child.type == "class_definition"), None)
    return class_header(node, text, exclude=None) if node is not None else ""


_DEF_START = re.compile(rb"(?:async[ \t]+)?def\b")
_DECORATOR = re.compile(rb"[ \t]*@")


def function_start_by_indentation(source: bytes, cursor: int) -> int | None:
    """Where the ``def`` (or its first decorator) starts whose body holds ``cursor``,
    found by indentation; None where the lines above lead to something else first.

    For a tree that has no function around the cursor while the code plainly has one: a
    body emptied down to a comment (an empty block is an error to tree-sitter), or a
    half-typed continuation line (``if a and \\``) can fold the function into an ERROR
    node. The prompt then fell back to the module level, which shares nothing with the
    prompts before and after it: the whole prompt was evaluated twice (3 s on ftplib)."""
    line_start = source.rfind(b"\n", 0, cursor) + 1
    before = source[line_start:cursor]
    width = _width(before) if before.strip() else len(before.expandtabs(8))
    position = line_start
    while width > 0 and position > 0:
        above = source.rfind(b"\n", 0, position - 1) + 1
        line = source[above : position - 1]
        position = above
        stripped = line.strip()
        if not stripped or stripped.startswith(b"#") or _width(line) >= width:
            continue
        if not _DEF_START.match(stripped):
            width = _width(line)  # the header of a block around the cursor: go on up
            continue
        start = above
        while start > 0:  # decorators right above it
            previous = source.rfind(b"\n", 0, start - 1) + 1
            if not _DECORATOR.match(source[previous : start - 1]):
                break
            start = previous
        return start
    return None


class _Statement(NamedTuple):
    """A top-level statement as the prompt's head reads it: the node, the definition
    under its decorators, that one's type, and whether it starts at column 0."""

    node: Node
    inner: Node
    kind: str
    at_margin: bool


def top_statements(tree: SyntaxTree) -> list[_Statement]:
    """The module's statements in order, read once for the imports, the outline and the
    used definitions of one request. An unclosed bracket being typed can make tree-sitter
    wrap the whole module in an ERROR node; its statements still count, so that the
    prompt's head (imports, definitions) stays put while the user types."""
    found = []
    stack = list(reversed(tree.root_node.named_children))
    while stack:
        child = stack.pop()
        inner = child
        kind = child.type
        if kind == "ERROR":
            stack.extend(reversed(child.named_children))
            continue
        if kind == "decorated_definition":
            inner = child.child_by_field_name("definition") or child
            kind = inner.type
        found.append(_Statement(child, inner, kind, child.start_point[1] == 0))
    return found


def _imports(
    tree: SyntaxTree, source: bytes, before: int, statements: list[_Statement] | None = None
) -> str:
    lines = []
    for statement in top_statements(tree) if statements is None else statements:
        child = statement.node
        if child.start_byte >= before:
            break
        if statement.kind in IMPORT_TYPES:
            lines.append(_text(source, child.start_byte, child.end_byte))
    return "\n".join(lines)


def outline(tree: SyntaxTree, source: bytes, statements: list[_Statement] | None = None) -> str:
    """The file's top-level functions and classes, one signature each (``def f(x): ...``),
    in file order; "" when it has fewer than :data:`OUTLINE_MIN_DEFINITIONS`. The same
    wherever the cursor is, so it belongs to the prompt's stable head."""
    entries = []
    for statement in top_statements(tree) if statements is None else statements:
        # Column 0 only: an unclosed bracket can fold a class into an ERROR node whose
        # children include its methods, which must not flip into the outline.
        if statement.kind in DEF_TYPES and statement.at_margin:
            inner = statement.inner
            body = inner.child_by_field_name("body")
            end = body.start_byte if body is not None else inner.end_byte
            entries.append(_text(source, inner.start_byte, end).rstrip() + " ...")
            if len(entries) >= MAX_OUTLINE_ENTRIES:
                break
    return "\n".join(entries) if len(entries) >= OUTLINE_MIN_DEFINITIONS else ""


def _used_definitions(
    tree: SyntaxTree, source: bytes, code: bytes, skip: tuple[Node, ...], skip_start: int = -1,
    statements: list[_Statement] | None = None,
) -> tuple[str, ...]:
    names = {match.group(0) for match in _IDENTIFIER.finditer(code)}
    found = []
    for statement in top_statements(tree) if statements is None else statements:
        inner = statement.inner
        if statement.kind not in DEF_TYPES or any(inner == s for s in skip):
            continue
        if skip_start in (statement.node.start_byte, inner.start_byte):
            continue  # the function being written, found by indentation
        name = inner.child_by_field_name("name")
        if name is not None and source[name.start_byte : name.end_byte] in names:
            found.append(stub(inner, source))
    return tuple(found)


def _suffix(source: bytes, cursor: int) -> str:
    end = cursor
    for _ in range(MAX_SUFFIX_LINES):
        found = source.find(b"\n", end)
        if found < 0:
            end = len(source)
            break
        end = found + 1
    return _text(source, cursor, end)


@dataclass(frozen=True)
class KnownHead:
    """The head of a document's prompts as of its last clean parse (kept by
    :class:`lsp_server.prompts.held.StableHeaders`): for a request whose tree has errors,
    which gets these in place of what it would build, so they are not built. ``file``:
    the imports and outline, or None; ``header_for``: a class's header by its class line
    (:func:`class_line`), or None."""

    file: tuple[str, str] | None
    header_for: Callable[[str], str | None]


def build_context(
    tree: SyntaxTree, source: bytes, cursor: int, *, real_cursor: int | None = None,
    known: KnownHead | None = None,
) -> PromptContext:
    """The prompt context at byte offset ``cursor`` of a Python document.

    ``real_cursor`` is where the user's cursor is when the prompt ends before it (at the
    start of a line holding only indentation): the block and the suffix are measured
    from there. ``known``: what the head of a function's prompt held at the last clean
    parse, taken instead of building it (a tree with errors only).
    """
    real = cursor if real_cursor is None else real_cursor
    chain = enclosing_definitions(tree, source, real)
    function: Node | None = None
    klass: Node | None = None
    for node in chain:
        if node.type == "function_definition":
            function = node
        elif node.type == "class_definition":
            if function is not None:
                klass = node
                break
            klass = node if klass is None else klass
    suffix = _suffix(source, real)
    block_indent = _block_indent(source, real, chain)
    if function is None:
        start = function_start_by_indentation(source, real)
        if start is not None and (klass is None or start > klass.start_byte):
            return _context_by_indentation(tree, source, cursor, start, klass, suffix, block_indent)
    if function is not None:
        outer = definition_node(function)
        start = source.rfind(b"\n", 0, outer.start_byte) + 1
        current = _text(source, start, cursor)
        skip = (function,) + ((klass,) if klass is not None else ())
        line = _text(source, *_line_bounds(source, function.start_byte))
        header: str | None = None
        if klass is not None:
            if known is not None:
                own = _header_text(klass, source)
                header = known.header_for(class_line(own) or own.split("\n", 1)[0])
            if header is None:
                header = class_header(klass, source, exclude=None, tail=members_after(tree, klass))
        elif tree.root_node.has_error and leading_ws(line):
            header = class_header_by_indentation(source, outer.start_byte)
        else:
            header = ""
        statements = top_statements(tree)
        if known is not None and known.file is not None:
            imports, file_outline = known.file
        else:
            imports = _imports(tree, source, len(source), statements)
            file_outline = outline(tree, source, statements)
        return PromptContext(
            imports=imports,
            definitions=_used_definitions(tree, source, source[start:cursor], skip, statements=statements),
            scope_header=header,
            current=current,
            suffix=suffix,
            block_indent=block_indent,
            function_indent=leading_ws(line),
            in_function=True,
            outline=file_outline,
        )
    if klass is not None:
        # In a class body but outside its methods: the class so far is the current code.
        outer = definition_node(klass)
        start = source.rfind(b"\n", 0, outer.start_byte) + 1
        line = _text(source, *_line_bounds(source, klass.start_byte))
        statements = top_statements(tree)
        return PromptContext(
            imports=_imports(tree, source, len(source), statements),
            definitions=_used_definitions(tree, source, source[start:cursor], (klass,), statements=statements),
            scope_header="",
            current=_text(source, start, cursor),
            suffix=suffix,
            block_indent=block_indent,
            function_indent=leading_ws(line) + "    ",
            in_function=False,
            outline=outline(tree, source, statements),
        )
    # Module level: the lines just before the cursor, with the imports above them.
    start = cursor
    for _ in range(MAX_MODULE_LINES):
        found = source.rfind(b"\n", 0, max(start - 1, 0))
        if found < 0:
            start = 0
            break
        start = found + 1
    return PromptContext(
        imports=_imports(tree, source, start),
        definitions=(),
        scope_header="",
        current=_text(source, start, cursor),
        suffix=suffix,
        block_indent=block_indent,
        function_indent="",
        in_function=False,
    )


def _context_by_indentation(
    tree: SyntaxTree, source: bytes, cursor: int, start: int, klass: Node | None,
    suffix: str, block_indent: str,
) -> PromptContext:
    """The context of a function that the tree lost, from where its text starts (see
    :func:`function_start_by_indentation`): the same parts as for a function the tree
    has, the class header from the tree where it still has the class."""
    def_start = start
    while _DECORATOR.match(source[def_start : source.find(b"\n", def_start)]):
        def_start = source.find(b"\n", def_start) + 1
    line = _text(source, *_line_bounds(source, def_start))
    if klass is not None:
        header = class_header(klass, source, exclude=None, tail=members_after(tree, klass))
    elif leading_ws(line):
        header = class_header_by_indentation(source, def_start)
    else:
        header = ""
    skip = (klass,) if klass is not None else ()
    statements = top_statements(tree)
    return PromptContext(
        imports=_imports(tree, source, len(source), statements),
        definitions=_used_definitions(tree, source, source[start:cursor], skip, skip_start=start,
                                      statements=statements),
        scope_header=header,
        current=_text(source, start, cursor),
        suffix=suffix,
        block_indent=block_indent,
        function_indent=leading_ws(line),
        in_function=True,
        outline=outline(tree, source, statements),
    )


def _block_indent(source: bytes, cursor: int, chain: list[Node]) -> str:
    """Indentation of the header line that opened the block at the cursor."""
    start, _ = _line_bounds(source, cursor)
    width = cursor_indent(source, cursor)
    position = start
    while width > 0 and position > 0:
        previous_start = source.rfind(b"\n", 0, position - 1) + 1
        line = _text(source, previous_start, position - 1)
        position = previous_start
        if line.strip() and not line.lstrip().startswith("#") and indent_width(line) < width:
            return leading_ws(line)
    if chain:
        return leading_ws(_text(source, *_line_bounds(source, chain[0].start_byte)))
    return ""
