"""The tree-sitter layer: one Python grammar, parsers, and questions asked of a tree."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import tree_sitter_python
from tree_sitter import Language, Node, Parser, Tree

PYTHON = Language(tree_sitter_python.language())

_local = threading.local()


def parser(purpose: str = "whole") -> Parser:
    """A parser for Python, one per thread (tree-sitter parsers are not thread-safe) and
    purpose (the one for included ranges keeps its ranges away from whole parses)."""
    parsers: dict[str, Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    found = parsers.get(purpose)
    if found is None:
        found = parsers[purpose] = Parser(PYTHON)
    return found


def parse(source: bytes, old_tree: Tree | None = None) -> Tree:
    if old_tree is None:
        return parser().parse(source)
    return parser().parse(source, old_tree)


def parse_text(text: str) -> Tree:
    return parse(text.encode("utf-8"))


def error_count(node: Node, focus: tuple[int, int] | None = None) -> int:
    """Number of problems under ``node``: ERROR and MISSING nodes, and empty blocks.

    tree-sitter-python accepts ``if x:`` at the end of a file with an empty block, which
    Python rejects; counting empty blocks keeps a bare header from passing as valid.

    With ``focus`` (a byte range), the walk enters only subtrees that hold an error or
    overlap the range: every ERROR and MISSING node is still counted, but empty blocks
    only where they touch the range (a header's empty block sits at its colon). A parse
    check of inserted text focuses on it and skips the rest of the tree.
    """
    count = 0
    cursor = node.walk()
    while True:
        current = cursor.node
        descend = True
        if current is not None:
            if current.is_error or current.is_missing:
                count += 1
                descend = False
            elif current.type == "block" and current.named_child_count == 0:
                count += 1
            elif focus is not None and not current.has_error:
                descend = current.start_byte <= focus[1] and current.end_byte >= focus[0]
        if descend and cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return count


def ancestors(node: Node | None) -> Iterator[Node]:
    while node is not None:
        yield node
        node = node.parent


def node_text(node: Node, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


FUNCTION_TYPES = frozenset({"function_definition"})
CLASS_TYPES = frozenset({"class_definition"})
STRING_TYPES = frozenset({"string", "string_content", "concatenated_string"})
COMMENT_TYPES = frozenset({"comment"})


def definition_node(node: Node) -> Node:
    """The node to show for a definition: its ``decorated_definition`` wrapper if any."""
    parent = node.parent
    if parent is not None and parent.type == "decorated_definition":
        return parent
    return node
