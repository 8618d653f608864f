"""Table tests for stop rules and the clean-up of raw suggestions."""

from __future__ import annotations

import random

import pytest

from lsp_server.prompts.postprocess import (
    CleanupInput,
    block_stop_rule,
    choose_parseable,
    clean,
    codex_stop_sequences,
    detect_indent_unit,
    line_prefixes,
    line_stop_rule,
    overlap_candidates,
)


@pytest.mark.parametrize(
    ("indent", "expected"),
    [
        pytest.param("", ("\nclass", "\ndef", "\n#", "\nif", "\nprint"), id="module-function"),
        pytest.param(
            "    ", ("\n    class", "\n    def", "\n    #", "\n    if", "\n    print"), id="method"
        ),
        pytest.param("\t", ("\n\tclass", "\n\tdef", "\n\t#", "\n\tif", "\n\tprint"), id="tab"),
    ],
)
def test_codex_stop_sequences(indent: str, expected: tuple[str, ...]) -> None:
    assert codex_stop_sequences(indent) == expected


BODY = "    x = 1\n    if x:\n        # note\n        print(x)\n    return x\n"


@pytest.mark.parametrize(
    ("indent", "text", "first_stop"),
    [
        pytest.param("", BODY, None, id="body-statements-do-not-stop"),
        pytest.param("", BODY + "\n\ndef g():\n", len(BODY) + 1, id="next-def"),
        pytest.param("", BODY + "\nif __name__ == '__main__':\n", len(BODY), id="main-guard"),
        pytest.param("", BODY + "\n# tests\n", len(BODY), id="top-comment"),
        pytest.param("", BODY + "\nprint(f())\n", len(BODY), id="top-print"),
        pytest.param("    ", "        return 1\n\n    def other(self):\n", 17, id="next-method"),
        pytest.param("    ", "        return 1\n        if y:\n", None, id="deeper-if-goes-on"),
    ],
)
def test_codex_stops_at_function_indentation(
    indent: str, text: str, first_stop: int | None
) -> None:
    """Where generation stops: the earliest stop sequence found in the text."""
    found = [text.find(stop) for stop in codex_stop_sequences(indent) if stop in text]
    assert (min(found) if found else None) == first_stop


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("abc", None, id="no-newline-yet"),
        pytest.param("abc\ndef", 3, id="first-newline"),
        pytest.param("\n\n  x\ny", 5, id="skips-leading-blank-lines"),
        pytest.param("\n  \n", None, id="only-blank"),
        pytest.param("", None, id="empty"),
    ],
)
def test_line_stop_rule(text: str, expected: int | None) -> None:
    assert line_stop_rule(text) == expected


@pytest.mark.parametrize(
    ("width", "first_line_is_new", "text", "kept"),
    [
        pytest.param(
            0,
            True,
            "    x = 1\n    return x\ndef g():",
            "    x = 1\n    return x",
            id="dedent-to-header",
        ),
        pytest.param(4, True, "        a\n    b = 1", "        a", id="dedent-to-method-level"),
        pytest.param(4, True, "        a\nb", "        a", id="dedent-past-header"),
        pytest.param(0, True, "    x = 1\n\n    y\n", None, id="blank-lines-go-on"),
        pytest.param(0, True, "    x = 1\n    # c\n)\n", None, id="closers-and-comments-go-on"),
        pytest.param(0, True, "    x = 1\n# c\n", None, id="dedented-comment-goes-on"),
        pytest.param(
            4,
            False,
            " x:\n        return 1\n    z = 2",
            " x:\n        return 1",
            id="first-line-is-cursor-line",
        ),
        pytest.param(4, False, "\n        a\n    b", "\n        a", id="header-end-then-body"),
        pytest.param(0, True, "b\n", "", id="first-new-line-already-dedented"),
        pytest.param(
            0,
            True,
            "    a = foo()\n    a = foo()\n    a = foo()\n    a",
            "    a = foo()",
            id="line-loop",
        ),
        pytest.param(
            0,
            True,
            "    a = 1\n    b = 2\n    a = 1\n    b = 2\n    c",
            "    a = 1\n    b = 2",
            id="two-line-loop",
        ),
        pytest.param(0, True, "    ]\n    ]\n    ]\n    ]\n", None, id="short-lines-are-no-loop"),
    ],
)
def test_block_stop_rule(width: int, first_line_is_new: bool, text: str, kept: str | None) -> None:
    cut = block_stop_rule(width, first_line_is_new)(text)
    assert (None if cut is None else text[:cut]) == kept


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            CleanupInput("x + 1\nfoo", "line", "    return ", "", ()),
            "x + 1",
            id="line-mode-one-line",
        ),
        pytest.param(
            CleanupInput("x + 1  ", "line", "    return ", "", ()), "x + 1", id="trailing-spaces"
        ),
        pytest.param(
            CleanupInput("   \n  ", "line", "x = ", "", ()), "", id="whitespace-only-line"
        ),
        pytest.param(CleanupInput("  \n \n", "block", "", "", ()), "", id="whitespace-only-block"),
        pytest.param(CleanupInput("", "block", "", "", ()), "", id="empty"),
        pytest.param(
            CleanupInput("a\r\nb  \r\n", "block", "", "", ()), "a\nb", id="crlf-normalised"
        ),
        pytest.param(
            CleanupInput("    y = 2\n    return y\n", "block", "", "", ("    return y",)),
            "    y = 2",
            id="drops-repeat-of-next-line",
        ),
        pytest.param(
            CleanupInput("    return y\n", "block", "", "", ("", "    return y")),
            "",
            id="whole-suggestion-repeats-next-line",
        ),
        pytest.param(
            CleanupInput("y\n    return y", "block", "    return ", "", ("    return y",)),
            "y",
            id="cursor-line-end-is-not-a-repeat",
        ),
        pytest.param(
            CleanupInput("    x = 1\n    )\n", "block", "", "", (")",)),
            "    x = 1\n    )",
            id="one-char-next-line-not-used",
        ),
        pytest.param(
            CleanupInput("\ty = 2\n\t\treturn y", "block", "", "", (), "    "),
            "    y = 2\n        return y",
            id="tabs-to-spaces",
        ),
        pytest.param(
            CleanupInput("    y = 2\n      return y", "block", "", "", (), "\t"),
            "\ty = 2\n\t  return y",
            id="spaces-to-tabs-keeps-remainder",
        ),
        pytest.param(
            CleanupInput("    n += 1\n    n += 1\n    n += 1\n    n += 1", "block", "", "", ()),
            "    n += 1",
            id="repetition-loop",
        ),
        pytest.param(
            CleanupInput("    x = 1\n\n\n", "block", "", "", ()),
            "    x = 1",
            id="trailing-blank-lines",
        ),
    ],
)
def test_clean(data: CleanupInput, expected: str) -> None:
    assert clean(data) == expected


@pytest.mark.parametrize(
    ("suggestion", "line_after", "expected"),
    [
        pytest.param("foo(a, b))", ")", ["foo(a, b)", "foo(a, b))"], id="closing-paren"),
        pytest.param('bar("x")', '")', ['bar("x', 'bar("x")'], id="quote-and-paren"),
        pytest.param("x = 1", "", ["x = 1"], id="nothing-after"),
        pytest.param("a]", "]  ", ["a", "a]"], id="after-has-trailing-space"),
        pytest.param(")", ")", [")"], id="only-the-overlap-is-not-empty-candidate"),
        pytest.param("f(x)]", ")]", ["f(x", "f(x)]"], id="only-prefixes-of-the-rest"),
    ],
)
def test_overlap_candidates(suggestion: str, line_after: str, expected: list[str]) -> None:
    assert overlap_candidates(suggestion, line_after) == expected


@pytest.mark.parametrize(
    ("suggestion", "expected"),
    [
        pytest.param("a\nb\n\nc", ["a\nb\n\nc", "a\nb", "a"], id="blank-line-collapses"),
        pytest.param("x", ["x"], id="one-line"),
        pytest.param("\n\n", [], id="blank"),
    ],
)
def test_line_prefixes(suggestion: str, expected: list[str]) -> None:
    assert line_prefixes(suggestion) == expected


@pytest.mark.parametrize(
    ("before", "after", "candidates", "expected"),
    [
        pytest.param("def f():\n    return ", "\n", ["(1 +", "1"], "1", id="first-clean-wins"),
        pytest.param("def f():\n    return ", "\n", ["1", "(1 +"], "1", id="order-matters"),
        pytest.param("def f():\n    return ", "\n", ["(1 +", "[2"], None, id="none-parses"),
        pytest.param(
            "def f(:\n    return ", "\n", ["(1 +", "1"], "1", id="broken-window-no-new-error"
        ),
        pytest.param("x = foo(", ")\n", ["a, b", "a, b)"], "a, b", id="overlap-trimmed"),
    ],
)
def test_choose_parseable(
    before: str, after: str, candidates: list[str], expected: str | None
) -> None:
    assert choose_parseable(before, after, candidates) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("\tx\n\ty\n    z\n", "\t", id="mostly-tabs"),
        pytest.param("    x\n\ty\n    z\n", "    ", id="mostly-spaces"),
        pytest.param("x = 1\n", "    ", id="no-indentation-default"),
    ],
)
def test_detect_indent_unit(text: str, expected: str) -> None:
    assert detect_indent_unit(text) == expected


def _indent_unit_by_lines(text: str, max_lines: int) -> str:
    """The rule, line by line (what detect_indent_unit counts in C)."""
    lines = text.split("\n")[:max_lines]
    tabs = sum(line.startswith("\t") for line in lines)
    spaces = sum(line.startswith("    ") for line in lines)
    return "\t" if tabs > spaces else "    "


def test_detect_indent_unit_counts_the_first_lines_only() -> None:
    rng = random.Random(7)
    pieces = ["\tx", "    y", "  z", "", "w", "\t", "     v", " \tu"]
    for _ in range(300):
        text = "\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        max_lines = rng.randint(1, 30)
        assert detect_indent_unit(text, max_lines) == _indent_unit_by_lines(text, max_lines), (text, max_lines)
    # Tabs past the first lines do not count.
    assert detect_indent_unit("    a\n" * 3 + "\tb\n" * 10, max_lines=3) == "    "
    assert detect_indent_unit("    a\n" * 3 + "\tb\n" * 10, max_lines=20) == "\t"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("    return x", None, id="no-newline-yet"),
        pytest.param("    return x\n    y", 12, id="one-complete-line"),
        pytest.param("    if x:\n        ", None, id="header-alone-is-not-complete"),
        pytest.param("    if x:\n        return 1\n", 26, id="header-and-body"),
        pytest.param("    foo(a,\n        b)\n    z", 21, id="open-bracket-line-skipped"),
        pytest.param("    x = 1  # note:\n", 18, id="colon-in-comment-ignored"),
    ],
)
def test_complete_line_cut(text: str, expected: int | None) -> None:
    from lsp_server.prompts.postprocess import complete_line_cut

    assert complete_line_cut(text) == expected


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        pytest.param(["width <= 0:", "width"], "width", id="bare-header-skipped"),
        pytest.param(["foo(a,"], None, id="open-bracket-only"),
        pytest.param(["width <= 0:\n            return []"], "width <= 0:\n            return []", id="header-with-body"),
    ],
)
def test_choose_parseable_in_broken_code_skips_open_lines(
    candidates: list[str], expected: str | None
) -> None:
    """Around already-broken code ("no new errors" is all the parse can say), a line
    that leaves a block or bracket open is not taken."""
    from lsp_server.prompts.postprocess import choose_parseable

    before = "def f(width):\n    x = (\n    if "
    after = "\n"
    assert choose_parseable(before, after, candidates) == expected


def _snapshot(text: str):  # type: ignore[no-untyped-def]
    from lsp_server.parsing.document import Document
    from lsp_server.prompts.snapshot import Snapshot

    return Snapshot.of(Document(uri="file:///w.py", text=text))


_BIG_CLASS = "class Big:\n" + "".join(
    f"    def m{i}(self, x):\n        return x + {i}\n\n" for i in range(300)
) + "    def target(self, y):\n        z = y\n        return z\n"


def test_parse_window_is_the_method_not_its_class() -> None:
    """A method of a 900-line class is parse-checked alone (the whole class used to be
    parsed for every candidate: 30 ms a request on tkinter)."""
    from lsp_server.prompts.postprocess import parse_window

    cursor = _BIG_CLASS.index("z = y") + len("z = y")
    start, end, head = parse_window(_snapshot(_BIG_CLASS), cursor)
    assert _BIG_CLASS[start:end].startswith("    def target(self, y):")
    assert "def m299" not in _BIG_CLASS[start:end]
    assert head == "if 1:\n"


def test_parse_window_of_a_nested_function_opens_each_level() -> None:
    from lsp_server.prompts.postprocess import choose_parseable, parse_window

    text = "class A:\n    def outer(self):\n        def inner():\n            a = 1\n        return inner\n"
    cursor = text.index("a = 1") + len("a = 1")
    start, end, head = parse_window(_snapshot(text), cursor)
    assert head == "if 1:\n    if 1:\n"
    before, after = head + text[start:cursor], text[cursor:end]
    # A line back at the method's level parses; a stray closing bracket does not.
    assert choose_parseable(before, after, ["\n        return 2"]) == "\n        return 2"
    assert choose_parseable(before, after, [" + 2)", " + 2"]) == " + 2"


def test_finish_checks_a_method_in_a_big_class() -> None:
    from lsp_server.prompts.postprocess import finish

    cursor = _BIG_CLASS.index("z = y") + len("z = y")
    snapshot = _snapshot(_BIG_CLASS)
    assert finish(snapshot, cursor, cursor, "line", " * 2") == " * 2"
    assert finish(snapshot, cursor, cursor, "line", " * (2") is None
