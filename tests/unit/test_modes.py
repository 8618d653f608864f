"""Table tests for when to complete and how much (none / line / block)."""

from __future__ import annotations

import pytest

from lsp_server.parsing.syntax import parse_text
from lsp_server.prompts.modes import decide

CURSOR = "\u2038"


def decide_at(marked: str, explicit: bool = False) -> tuple[str, str]:
    index = marked.index(CURSOR)
    text = marked.replace(CURSOR, "", 1)
    trigger = decide(
        parse_text(text), text.encode("utf-8"), len(text[:index].encode("utf-8")), explicit=explicit
    )
    return trigger.mode, trigger.reason


@pytest.mark.parametrize(
    ("marked", "mode", "reason"),
    [
        # Strings and comments.
        pytest.param('x = "abc‸"\n', "none", "inside a string", id="closed-string"),
        pytest.param('"""doc‸"""\n', "none", "inside a string", id="triple-string"),
        pytest.param(
            'def f():\n    """Doc\n    ‸\n    """\n',
            "none",
            "inside a string",
            id="docstring-body-line",
        ),
        pytest.param('rb"\\x‸"', "none", "inside a string", id="bytes-escape"),
        pytest.param("x = 'ab‸\n", "none", "inside a string", id="unterminated-string-mid-file"),
        pytest.param('x = "‸', "none", "inside a string", id="just-opened-quote-at-eof"),
        pytest.param("print('ab‸", "none", "inside a string", id="unterminated-in-call"),
        pytest.param(
            "s = '''\nabc‸", "none", "inside a string", id="unterminated-triple-next-line"
        ),
        pytest.param(
            'def f():\n    """Doc\n\n    ‸', "none", "inside a string", id="unterminated-docstring"
        ),
        pytest.param(
            'x = "a\\"b‸', "none", "inside a string", id="unterminated-with-escaped-quote"
        ),
        pytest.param(
            "x = 'ab\ny = ‸", "line", "mid-line", id="unterminated-quote-ends-at-its-line"
        ),
        pytest.param("# comm‸ent\n", "none", "inside a comment", id="comment"),
        pytest.param("x = 1  # ‸\n", "none", "inside a comment", id="trailing-comment-end"),
        # f-strings: the braces hold code, the rest is string.
        pytest.param('f"{na‸}"\n', "line", "mid-line", id="fstring-interpolation"),
        pytest.param('x = f"{a‸', "line", "mid-line", id="unterminated-fstring-interpolation"),
        pytest.param('f"{x!r}‸"', "none", "inside a string", id="fstring-after-closing-brace"),
        pytest.param('f"{name}‸ tail"\n', "none", "inside a string", id="fstring-text-after-brace"),
        pytest.param('x = f"ab {a} ‸', "none", "inside a string", id="unterminated-fstring-text"),
        # Code after the cursor on its line.
        pytest.param(
            "x = foo(‸a)\n", "none", "code follows the cursor on this line", id="code-after"
        ),
        pytest.param(
            "x = ‸bar\n", "none", "code follows the cursor on this line", id="identifier-after"
        ),
        pytest.param(
            "x = 1 ‸ # c\n",
            "none",
            "code follows the cursor on this line",
            id="comment-after-counts",
        ),
        pytest.param("x = foo(‸)\n", "line", "mid-line", id="closer-after"),
        pytest.param("x = {‸}\n", "line", "mid-line", id="brace-after"),
        pytest.param('x = "a" ‸\n', "line", "mid-line", id="after-a-closed-string"),
        # Line and block.
        pytest.param("y = fo‸", "line", "mid-line", id="mid-line"),
        pytest.param("x = 1\n‸", "line", "new line", id="new-module-line"),
        pytest.param("def f(x):\n    y = 1\n    ‸\n", "line", "new line", id="new-line-in-body"),
        pytest.param("def f(x):‸", "block", "after a block header", id="end-of-def-header"),
        pytest.param("def f(x):\n    ‸", "block", "after a block header", id="line-after-def"),
        pytest.param("for i in range(3):‸\n", "block", "after a block header", id="for-header"),
        pytest.param(
            "if x:  # why\n    ‸", "block", "after a block header", id="if-header-with-comment"
        ),
        pytest.param("class C:\n    ‸", "block", "after a block header", id="class-header"),
        pytest.param(
            "async def g():\n    ‸", "block", "after a block header", id="async-def-header"
        ),
        pytest.param(
            "def f(\n    a,\n    b,\n):\n    ‸",
            "block",
            "after a block header",
            id="multi-line-signature",
        ),
        pytest.param(
            "if (a and\n        b):\n    ‸",
            "block",
            "after a block header",
            id="multi-line-if-header",
        ),
        pytest.param(
            "with open(\n    p\n) as f:  # c\n    ‸",
            "block",
            "after a block header",
            id="multi-line-with-header-and-comment",
        ),
        pytest.param(
            "if (a and\n        b):‸", "block", "after a block header", id="on-multi-line-header"
        ),
        pytest.param("x = {\n    'a':‸", "line", "mid-line", id="dict-colon-is-no-header"),
        pytest.param("f = lambda x:‸", "line", "mid-line", id="lambda-colon-is-no-header"),
        pytest.param("x = [\n    1,\n]\n‸", "line", "new line", id="after-multi-line-list"),
        pytest.param("def f():\n    pass\n‸", "line", "new line", id="after-finished-function"),
        pytest.param(
            'def f(x):\n    """D."""\n    ‸\n',
            "block",
            "empty function body",
            id="docstring-only-body",
        ),
        pytest.param(
            'def f(x):\n    """D."""\n‸', "block", "empty function body", id="humaneval-column-0"
        ),
        pytest.param("if x:\r\n    ‸", "block", "after a block header", id="crlf-header"),
    ],
)
def test_decide(marked: str, mode: str, reason: str) -> None:
    assert decide_at(marked) == (mode, reason)


@pytest.mark.parametrize(
    ("marked", "mode"),
    [
        pytest.param('x = "abc‸"\n', "line", id="string"),
        pytest.param("# comm‸ent\n", "line", id="comment"),
        pytest.param("x = foo(‸a)\n", "line", id="code-after"),
        pytest.param(
            'def f():\n    """Doc\n    ‸\n    """\n', "block", id="inside-docstring-of-empty-body"
        ),
        pytest.param("x = 'ab‸\n", "line", id="unterminated-string"),
    ],
)
def test_explicit_overrides_none(marked: str, mode: str) -> None:
    assert decide_at(marked, explicit=True)[0] == mode
