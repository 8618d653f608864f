"""The engine's pure planning step: mode, replaced range and prompt context."""

from __future__ import annotations

import pytest

from lsp_server.engine import Plan, Snapshot, plan
from lsp_server.parsing.document import Document
from lsp_server.prompts.context import PromptContext

CURSOR = "\u2038"

STACK = (
    "import os\n\nclass Stack:\n    def size(self):\n        return 0\n\n"
    "    def push(self, item):\n        x = 1\n        ‸\n        return x\n\n"
    "    def pop(self):\n        pass\n"
)


def plan_at(marked: str, explicit: bool = False) -> tuple[Plan, str]:
    index = marked.index(CURSOR)
    text = marked.replace(CURSOR, "", 1)
    document = Document("file:///tmp/t.py", text)
    return plan(Snapshot.of(document), index, explicit=explicit), text


@pytest.mark.parametrize(
    ("marked", "explicit", "mode", "reason"),
    [
        pytest.param('x = "ab‸c"\n', False, "none", "inside a string", id="string"),
        pytest.param('x = "ab‸c"\n', True, "line", "mid-line", id="string-explicit"),
        pytest.param("# to‸do\n", False, "none", "inside a comment", id="comment"),
        pytest.param(
            "x = f(‸y)\n", False, "none", "code follows the cursor on this line", id="code-after"
        ),
        pytest.param("def f(x):\n    return ‸", False, "line", "mid-line", id="mid-line"),
        pytest.param("def f(x):\n    ‸", False, "block", "after a block header", id="block"),
        pytest.param(
            'def f(x):\n    """D."""\n‸', False, "block", "empty function body", id="humaneval"
        ),
    ],
)
def test_plan_mode(marked: str, explicit: bool, mode: str, reason: str) -> None:
    result, _ = plan_at(marked, explicit)
    assert (result.mode, result.reason) == (mode, reason)
    if mode == "none":
        assert result.context is None
        assert result.start == marked.index(CURSOR)


@pytest.mark.parametrize(
    ("marked", "start_line_offset"),
    [
        pytest.param("def f(x):\n    ‸", 10, id="blank-indented-line-starts-at-line-start"),
        pytest.param("def f(x):\n    y = 1\n\t‸", 20, id="tab-only-prefix"),
        pytest.param("x = 1\n‸", 6, id="empty-line"),
        pytest.param("def f(x):\n    return ‸", None, id="code-before-starts-at-cursor"),
        pytest.param("s = 1  # \U0001f600\ndef f():\n    ‸", 20, id="code-points-after-emoji"),
    ],
)
def test_plan_replaced_range_start(marked: str, start_line_offset: int | None) -> None:
    result, text = plan_at(marked)
    cursor = marked.index(CURSOR)
    expected = cursor if start_line_offset is None else start_line_offset
    assert result.start == expected
    assert result.context is not None
    # The prompt ends where the replaced range starts.
    assert text[:expected].endswith(result.context.current)


@pytest.mark.parametrize(
    ("marked", "expected"),
    [
        pytest.param(
            STACK,
            PromptContext(
                imports="import os",
                definitions=(),
                scope_header=(
                    "class Stack:\n    def size(self):\n        ...\n"
                    "    def push(self, item):\n        ...\n    def pop(self):\n        ..."
                ),
                current="    def push(self, item):\n        x = 1\n",
                suffix="\n        return x\n\n    def pop(self):\n        pass\n",
                block_indent="    ",
                function_indent="    ",
                in_function=True,
            ),
            id="blank-line-inside-method-body",
        ),
        pytest.param(
            "def f(x):\n    y = 1\n    if y:\n        ‸\n",
            PromptContext("", (), "", "def f(x):\n    y = 1\n    if y:\n", "\n", "    ", "", True),
            id="blank-line-at-end-of-function",
        ),
        pytest.param(
            "def f(x):\n    y = 1\n‸\n    return y\n",
            PromptContext("", (), "", "def f(x):\n    y = 1\n", "\n    return y\n", "", "", True),
            id="empty-line-between-body-statements",
        ),
        pytest.param(
            "def helper():\n    return 1\n\ndef main():\n    v = helper()\n    ‸",
            PromptContext(
                "",
                ("def helper():\n    ...",),
                "",
                "def main():\n    v = helper()\n",
                "",
                "",
                "",
                True,
            ),
            id="used-definition-on-blank-line",
        ),
        pytest.param(
            "def f(x):\n    return x\n\n‸",
            PromptContext("", (), "", "def f(x):\n    return x\n\n", "", "", "", False),
            id="module-level-after-function",
        ),
    ],
)
def test_plan_context(marked: str, expected: PromptContext) -> None:
    result, _ = plan_at(marked)
    assert result.context == expected


def test_blank_prefix_before_code_keeps_the_function_context() -> None:
    """Invoked at a line's indentation with code after it, the prompt still holds the
    enclosing class and function (the chain comes from the real cursor)."""
    text = (
        "import re\n\n\nclass Wrapper:\n    def other(self):\n        pass\n\n"
        "    def wrap(self, text):\n        lines = []\n        while text:\n            pass\n"
    )
    document = Document(uri="file:///w.py", text=text)
    cursor = text.index("        while text:") + 8
    planned = plan(Snapshot.of(document), cursor, explicit=True)
    assert planned.context is not None
    assert planned.context.in_function
    assert planned.context.imports == "import re"
    assert planned.context.scope_header.startswith("class Wrapper:")
    assert planned.context.current.startswith("    def wrap(self, text):")
    assert planned.start == text.index("        while text:")
