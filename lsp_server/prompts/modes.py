"""When to complete, and how much, decided from the syntax tree at the cursor.

- ``none``: inside a string or a comment (unless the user asked explicitly), or with
  real code right after the cursor on the same line;
- ``line``: the rest of the line, when typing mid-line or on a new line of a body;
- ``block``: a whole block, after a ``def``/``if``/``for``... header or in an empty body.
"""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Tree

from lsp_server.parsing.syntax import ancestors
from lsp_server.prompts.context import BLOCK_HEADER, _body_is_empty, enclosing_definitions

# Text after the cursor that a suggestion may sit before (closing brackets, quotes...).
_CLOSERS = set(")]}\"':;, \t\r")


@dataclass(frozen=True)
class Trigger:
    mode: str  # "none" | "line" | "block"
    reason: str


def _inside(tree: Tree, cursor: int) -> str | None:
    """'string' or 'comment' when the cursor is inside one, else None."""
    if cursor <= 0:
        return None
    node = tree.root_node.descendant_for_byte_range(cursor - 1, cursor)
    for candidate in ancestors(node):
        if candidate.type == "interpolation":
            return None  # code inside an f-string's braces
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
    return None


def decide(tree: Tree, source: bytes, cursor: int, *, explicit: bool = False) -> Trigger:
    line_start = source.rfind(b"\n", 0, cursor) + 1
    line_end = source.find(b"\n", cursor)
    line_end = len(source) if line_end < 0 else line_end
    before = source[line_start:cursor].decode("utf-8", errors="replace")
    after = source[cursor:line_end].decode("utf-8", errors="replace")
    inside = _inside(tree, cursor)
    if inside is not None and not explicit:
        return Trigger("none", f"inside a {inside}")
    if after.strip() and not set(after) <= _CLOSERS and not explicit:
        return Trigger("none", "code follows the cursor on this line")
    if before.strip():
        if BLOCK_HEADER.match(before) and not after.strip():
            return Trigger("block", "after a block header")
        return Trigger("line", "mid-line")
    previous = _previous_code_line(source, line_start)
    if previous is not None and BLOCK_HEADER.match(previous):
        return Trigger("block", "after a block header")
    chain = enclosing_definitions(tree, source, cursor)
    if chain and chain[0].type == "function_definition" and _body_is_empty(chain[0]):
        return Trigger("block", "empty function body")
    return Trigger("line", "new line")


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
