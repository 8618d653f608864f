"""When to complete, and how much, decided from the syntax tree at the cursor.

- ``none``: inside a string or a comment (unless the user asked explicitly), or with
  real code right after the cursor on the same line;
- ``line``: the rest of the line, when typing mid-line or on a new line of a body;
- ``block``: a whole block, after a ``def``/``if``/``for``... header or in an empty body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lsp_server.parsing.region import SyntaxTree
from lsp_server.parsing.syntax import ancestors
from lsp_server.prompts.context import BLOCK_HEADER, _body_is_empty, enclosing_definitions

# Text after the cursor that a suggestion may sit before (closing brackets, quotes...).
_CLOSERS = set(")]}\"':;, \t\r")


# What to complete at the cursor; a suggestion's mode is "line" or "block".
Mode = Literal["none", "line", "block"]
SuggestionMode = Literal["line", "block"]


@dataclass(frozen=True)
class Trigger:
    mode: Mode
    reason: str


def _inside(tree: SyntaxTree, source: bytes, cursor: int) -> str | None:
    """'string' or 'comment' when the cursor is inside one, else None."""
    if cursor <= 0:
        return None
    node = tree.root_node.descendant_for_byte_range(cursor - 1, cursor)
    for candidate in ancestors(node):
        if candidate.type == "interpolation":
            closing = candidate.children[-1] if candidate.children else None
            if cursor < candidate.end_byte or closing is None or closing.is_missing:
                return None  # code inside an f-string's braces
            continue  # just after the closing brace: the string's text again
        if candidate.type == "comment" and candidate.start_byte < cursor <= candidate.end_byte:
            return "comment"
        if candidate.type == "string" and candidate.start_byte < cursor < candidate.end_byte:
            return "string"
        if candidate.type == "string" and candidate.start_byte < cursor == candidate.end_byte:
            # At the end of an unterminated string the node ends at the cursor.
            end = candidate.child_by_field_name("end") or (
                candidate.children[-1] if candidate.children else None
            )
            if end is None or end.type != "string_end" or end.start_byte == end.end_byte:
                return "string"
    return "string" if _in_unterminated_string(tree, source, cursor) else None


def _in_unterminated_string(tree: SyntaxTree, source: bytes, cursor: int) -> bool:
    """Whether the cursor follows a string opener that tree-sitter left in an ERROR node.

    An unclosed quote parses as a lone ``string_start``: a plain string runs to the end
    of its line, a triple-quoted one to the end of the file.
    """
    if not tree.root_node.has_error:
        return False
    stack = list(tree.root_node.children)
    while stack:
        node = stack.pop()
        if node.start_byte >= cursor or (not node.has_error and node.type != "string_start"):
            continue
        if node.type == "string_start" and node.parent is not None and node.parent.type == "ERROR":
            opener = source[node.start_byte : node.end_byte]
            between = re.sub(rb"\\.", b"", source[node.end_byte : cursor])  # no escapes
            quote = opener[-3:] if opener[-3:] in (b'"""', b"'''") else opener[-1:]
            if quote in between or (len(quote) == 1 and b"\n" in between):
                continue
            if b"f" in opener.lower() and between.count(b"{") > between.count(b"}"):
                continue  # inside an f-string's braces: code
            return True
        stack.extend(node.children)
    return False


def decide(tree: SyntaxTree, source: bytes, cursor: int, *, explicit: bool = False) -> Trigger:
    line_start = source.rfind(b"\n", 0, cursor) + 1
    line_end = source.find(b"\n", cursor)
    line_end = len(source) if line_end < 0 else line_end
    before = source[line_start:cursor].decode("utf-8", errors="replace")
    after = source[cursor:line_end].decode("utf-8", errors="replace")
    inside = _inside(tree, source, cursor)
    if inside is not None and not explicit:
        return Trigger("none", f"inside a {inside}")
    if after.strip() and not set(after) <= _CLOSERS and not explicit:
        return Trigger("none", "code follows the cursor on this line")
    if before.strip():
        if (BLOCK_HEADER.match(before) or _ends_header(tree, source, cursor)) and not after.strip():
            return Trigger("block", "after a block header")
        return Trigger("line", "mid-line")
    previous = _previous_code_line(source, line_start)
    if previous is not None and (
        BLOCK_HEADER.match(previous) or _ends_header(tree, source, line_start)
    ):
        return Trigger("block", "after a block header")
    chain = enclosing_definitions(tree, source, cursor)
    if chain and chain[0].type == "function_definition" and _body_is_empty(chain[0]):
        return Trigger("block", "empty function body")
    return Trigger("line", "new line")


# Statements whose own ``:`` opens a block (a header may span several lines).
_HEADER_OWNERS = frozenset({
    "function_definition", "class_definition", "if_statement", "elif_clause", "else_clause",
    "for_statement", "while_statement", "with_statement", "try_statement", "except_clause",
    "except_group_clause", "finally_clause", "match_statement", "case_clause",
})  # fmt: skip


def _ends_header(tree: SyntaxTree, source: bytes, position: int) -> bool:
    """Whether the last code before ``position`` is the colon of a block header.

    Catches headers that span lines (``if (a and\\n        b):``), which the one-line
    pattern cannot see.
    """
    while position > 0:
        position -= 1
        if source[position : position + 1] in (b" ", b"\t", b"\r", b"\n"):
            continue
        node = tree.root_node.descendant_for_byte_range(position, position + 1)
        if node is not None and node.type == "comment":
            position = node.start_byte
            continue
        return (
            node is not None
            and node.type == ":"
            and node.parent is not None
            and node.parent.type in _HEADER_OWNERS
        )
    return False


def _previous_code_line(source: bytes, line_start: int) -> str | None:
    position = line_start
    while position > 0:
        start = source.rfind(b"\n", 0, position - 1) + 1
        line = source[start : position - 1].decode("utf-8", errors="replace")
        position = start
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return line.rstrip("\r")
    return None
