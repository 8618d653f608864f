"""error_count: the parse check's measure, whole-tree and focused on inserted text."""

from __future__ import annotations

import pytest

from lsp_server.parsing.syntax import error_count, parse_text

ERRORS = [
    # (source, focus as (start, end) substrings' offsets or None, expected count)
    ("def f():\n    return 1\n", None, 0),
    ("if x:", None, 1),  # empty block at end of file
    ("def f(:\n    pass\n", None, 1),
    ("if x:\n    pass\nelse:\n", None, 1),
]


@pytest.mark.parametrize(("source", "focus", "expected"), ERRORS)
def test_error_count_whole_tree(source: str, focus: None, expected: int) -> None:
    assert error_count(parse_text(source).root_node, focus) == expected


def test_focus_counts_every_syntax_error_but_empty_blocks_only_near_it() -> None:
    source = "def broken(:\n    pass\n\nif a:\n\nx = 1\nif b:\n"
    tree = parse_text(source)
    whole = error_count(tree.root_node)
    first_header = source.index("if a:")
    last_header = source.index("if b:")
    near_last = error_count(tree.root_node, (last_header, len(source)))
    near_first = error_count(tree.root_node, (first_header, first_header + 5))
    far = error_count(tree.root_node, (source.index("x = 1"), source.index("x = 1") + 5))
    assert whole == near_first + 1 == near_last + 1
    assert far == whole - 2 >= 1  # the syntax error is counted wherever the focus is


def test_focus_sees_an_empty_block_inside_a_long_file() -> None:
    body = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(200))
    inserted = "def g():\n    if ready:\n"
    source = body + inserted + "\n" + body
    start = len(body)
    tree = parse_text(source)
    assert error_count(tree.root_node, (start, start + len(inserted))) == 1
    assert error_count(tree.root_node, (0, 10)) == 0
