"""Where a docstring goes and the one text edit that puts it there.

The edit inserts the docstring as the first statement of the body (after decorators
and after the whole signature, however many lines it spans), or replaces the existing
docstring. It uses the file's newline (CRLF stays CRLF), its indentation (tabs stay
tabs) and its quote style, touches nothing else, and is refused if the result would
not parse as well as the original did.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from tree_sitter import Tree

from lsp_server.docstrings.errors import InsertionFailed
from lsp_server.docstrings.structure import Definition, definition_at
from lsp_server.docstrings.styles import Quoting
from lsp_server.parsing import syntax


@dataclass(frozen=True)
class TextEdit:
    """Replace ``text[start:end]`` (code-point offsets) with ``new_text``."""

    start: int
    end: int
    new_text: str

    def apply(self, text: str) -> str:
        return text[: self.start] + self.new_text + text[self.end :]


@dataclass(frozen=True)
class Placement:
    """How the docstring must look where it goes."""

    indent: str  # the body's indentation, before the opening quotes
    unit: str  # one indentation level ("    " or "\t")
    newline: str  # "\n" or "\r\n"
    quoting: Quoting


def detect_newline(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def detect_unit(text: str) -> str:
    """One level of indentation in this file, read where blocks open: the step from a
    line ending in ``:`` to the next line (a tab, or the most common number of spaces).
    Continuation lines aligned under brackets do not count."""
    steps: Counter[str] = Counter()
    previous: tuple[str, bool] | None = None  # (statement's indentation, opens a block)
    depth = 0  # open brackets: lines inside them continue a statement
    statement_indent = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if depth == 0:
            if previous is not None and previous[1] and len(indent) > len(previous[0]):
                if indent.startswith(previous[0]):
                    steps[indent[len(previous[0]) :]] += 1
            statement_indent = indent
        code = stripped.split("#", 1)[0].rstrip() if "#" in stripped else stripped
        depth = max(
            0, depth + sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
        )
        previous = (statement_indent, depth == 0 and code.endswith(":"))
    if not steps:
        return "    "
    unit = steps.most_common(1)[0][0]
    if unit.startswith("\t"):
        return "\t"
    return unit if unit.strip(" ") == "" and 1 <= len(unit) <= 8 else "    "


def detect_quoting(existing_docstrings: list[str]) -> Quoting:
    """Triple double quotes unless the file's docstrings mostly use triple single ones."""
    singles = sum(1 for d in existing_docstrings if d.lstrip("rRuU").startswith("'''"))
    doubles = sum(1 for d in existing_docstrings if d.lstrip("rRuU").startswith('"""'))
    return Quoting("'''" if singles > doubles else '"""')


def _byte_to_char(source: bytes, byte_offset: int) -> int:
    return len(source[:byte_offset].decode("utf-8", errors="replace"))


def _line_start(text: str, offset: int) -> int:
    return text.rfind("\n", 0, offset) + 1


def _leading_whitespace(text: str, offset: int) -> str:
    start = _line_start(text, offset)
    match = re.match(r"[ \t]*", text[start:])
    return match.group(0) if match else ""


def placement(
    text: str, source: bytes, definition: Definition, existing_docstrings: list[str]
) -> Placement:
    unit = detect_unit(text)
    quoting = detect_quoting(existing_docstrings)
    node = definition.node
    body = node.child_by_field_name("body")
    header_line_end = text.find("\n", _byte_to_char(source, definition.header_end))
    if definition.existing_docstring is not None:
        old = definition.existing_docstring
        old_text = syntax.node_text(old, source)
        prefix = re.match(r"[rRuU]*", old_text)
        quote = old_text[len(prefix.group(0)) if prefix else 0 :][:3]
        if quote in ('"""', "'''"):
            quoting = Quoting(quote, "r" if prefix and "r" in prefix.group(0).lower() else "")
    first = _first_statement_offset(text, source, body)
    if first is not None and (header_line_end == -1 or first < header_line_end):
        # The body shares the signature's line: it moves down one level below the def.
        indent = _leading_whitespace(text, _byte_to_char(source, node.start_byte)) + unit
    elif first is not None:
        indent = _leading_whitespace(text, first)
    else:
        indent = _leading_whitespace(text, _byte_to_char(source, node.start_byte)) + unit
    return Placement(indent=indent, unit=unit, newline=detect_newline(text), quoting=quoting)


def _first_statement_offset(text: str, source: bytes, body: object) -> int | None:
    if body is None:
        return None
    for child in body.named_children:  # type: ignore[attr-defined]
        if child.type != "comment":
            return _byte_to_char(source, child.start_byte)
    return None


def build_edit(
    text: str, source: bytes, definition: Definition, literal: str, place: Placement
) -> TextEdit:
    """The edit that makes ``literal`` (lines joined by ``\\n``) the docstring."""
    literal = literal.replace("\n", place.newline)
    existing = definition.existing_docstring
    if existing is not None:
        return TextEdit(
            _byte_to_char(source, existing.start_byte),
            _byte_to_char(source, existing.end_byte),
            literal,
        )
    colon = _byte_to_char(source, definition.header_end)
    first = _first_statement_offset(text, source, definition.node.child_by_field_name("body"))
    line_end = text.find("\n", colon)
    if first is not None and (line_end == -1 or first < line_end):
        # ``def f(x): return x``: put the docstring and the body on lines of their own.
        return TextEdit(
            colon, first, f"{place.newline}{place.indent}{literal}{place.newline}{place.indent}"
        )
    if line_end == -1:  # a header at the very end of the file with no body
        return TextEdit(len(text), len(text), f"{place.newline}{place.indent}{literal}")
    insert_at = line_end + 1
    # PEP 257 and black: a blank line separates a class docstring from what follows.
    next_line = text[insert_at : text.find("\n", insert_at) if "\n" in text[insert_at:] else None]
    blank = (
        place.newline if definition.node.type == "class_definition" and next_line.strip() else ""
    )
    return TextEdit(insert_at, insert_at, f"{place.indent}{literal}{place.newline}{blank}")


def check_edit(text: str, tree: Tree, edit: TextEdit, name_offset: int) -> str:
    """Apply ``edit`` and make sure the buffer parses as well as before and the new
    string is the definition's docstring; returns the new text."""
    new_text = edit.apply(text)
    new_source = new_text.encode("utf-8")
    new_tree = syntax.parse(new_source)
    if syntax.error_count(new_tree.root_node) > syntax.error_count(tree.root_node):
        raise InsertionFailed("The docstring edit would break the file's syntax; nothing changed.")
    shift = len(edit.new_text) - (edit.end - edit.start) if edit.start <= name_offset else 0
    byte_offset = len(new_text[: name_offset + shift].encode("utf-8"))
    try:
        again = definition_at(new_tree, new_source, byte_offset)
    except Exception as error:
        raise InsertionFailed(f"The docstring edit did not land where expected: {error}") from error
    if again.existing_docstring is None:
        raise InsertionFailed("The docstring edit did not land where expected; nothing changed.")
    return new_text
