"""Putting a docstring in place: position, indentation, quotes, newlines, nothing else
touched. Python's own ``ast`` is the independent judge of the result."""

from __future__ import annotations

import ast
import re

import pytest

from lsp_server.docstrings import generate, prepare
from lsp_server.docstrings.styles import PLACEHOLDER, parse_docstring

TEXTS = {"summary": "Do the thing."}


def _definitions(tree: ast.AST) -> dict[str, ast.AST]:
    found: dict[str, ast.AST] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.setdefault(node.name, node)
    return found


def _without_docstrings(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


CASES = [
    pytest.param("def f(a, b):\n    return a + b\n", "f", "    ", id="function"),
    pytest.param("async def f(a):\n    return await a\n", "f", "    ", id="async-def"),
    pytest.param(
        "@app.route('/x')\n@cache\ndef f(a):\n    return a\n", "f", "    ", id="decorators"
    ),
    pytest.param(
        "def outer(x):\n    def inner(y):\n        return y\n    return inner(x)\n",
        "inner",
        "        ",
        id="nested-function",
    ),
    pytest.param("class C:\n    def m(self, x):\n        return x\n", "m", "        ", id="method"),
    pytest.param(
        "class C:\n    @classmethod\n    def m(cls, x):\n        return x\n",
        "m",
        "        ",
        id="classmethod",
    ),
    pytest.param(
        "def f(\n    a,\n    b: int = 2,\n) -> int:\n    return a\n",
        "f",
        "    ",
        id="multi-line-signature",
    ),
    pytest.param(
        "def f(a,\n      b):  # comment\n    # leading comment\n    return a\n",
        "f",
        "    ",
        id="signature-comment-and-leading-comment",
    ),
    pytest.param("def f(a):\n\treturn a\n", "f", "\t", id="tabs"),
    pytest.param("class C:\n\tdef m(self, a):\n\t\treturn a\n", "m", "\t\t", id="tabs-method"),
    pytest.param("def f(a):\r\n    return a\r\n\r\nx = 1\r\n", "f", "    ", id="crlf"),
    pytest.param("def f(a):\n  return a\n", "f", "  ", id="two-space-indent"),
    pytest.param("def f(a): return a\n", "f", "    ", id="body-on-signature-line"),
    pytest.param("class C:\n  def m(self): return 1\n", "m", "    ", id="body-on-line-2-space"),
    pytest.param(
        'def f(a):\n    """Old."""\n    return a\n', "f", "    ", id="existing-one-line-docstring"
    ),
    pytest.param(
        "def f(a):\n    '''Old.\n\n    More.\n    '''\n    return a\n",
        "f",
        "    ",
        id="existing-multi-line-single-quotes",
    ),
    pytest.param(
        'def f(a):\n    r"""Old \\d."""\n    return a\n', "f", "    ", id="existing-raw-docstring"
    ),
    pytest.param(
        "class C(Base):\n    x = 1\n\n    def __init__(self, a):\n        self.a = a\n",
        "C",
        "    ",
        id="class",
    ),
    pytest.param("def f(é, ü):\n    return '日本' + é\n", "f", "    ", id="non-ascii"),
    pytest.param("def f():\n    pass", "f", "    ", id="no-final-newline"),
]


@pytest.mark.parametrize(("source", "name", "indent"), CASES)
@pytest.mark.parametrize("style", ["google", "numpy", "sphinx"])
def test_insertion(source: str, name: str, indent: str, style: str) -> None:
    job = prepare(source, name=name, style=style)
    outcome = generate(job, None)
    new_text = outcome.new_text

    # Python agrees it parses, and the definition now has a docstring.
    new_tree = ast.parse(new_text)
    docstring = ast.get_docstring(_definitions(new_tree)[name], clean=False)
    assert docstring is not None

    # Nothing else in the file changed.
    assert _without_docstrings(new_tree) == _without_docstrings(ast.parse(source))

    # Each docstring line sits at the body's indentation.
    lines = outcome.literal.split("\n")
    assert all(line.startswith(indent) or not line for line in lines[1:])
    quote = lines[0].lstrip("rR")[:3]
    if len(lines) > 1:
        assert lines[-1] == indent + quote

    # Newlines follow the file: no bare LF in a CRLF file.
    if "\r\n" in source:
        assert re.search(r"(?<!\r)\n", new_text) is None
    else:
        assert "\r" not in new_text

    # Every parameter is documented, nothing is invented.
    parsed = parse_docstring(docstring)
    expected = {p.display_name for p in job.structure.params}
    assert set(parsed.params) == expected
    assert (parsed.returns is not None) == job.structure.returns


@pytest.mark.parametrize(
    ("source", "name", "expected_quote"),
    [
        pytest.param(
            "def g():\n    '''Doc.'''\n\ndef f():\n    pass\n",
            "f",
            "'''",
            id="file-uses-single-quotes",
        ),
        pytest.param(
            'def g():\n    """Doc."""\n\ndef f():\n    pass\n',
            "f",
            '"""',
            id="file-uses-double-quotes",
        ),
        pytest.param("def f():\n    pass\n", "f", '"""', id="default-double"),
        pytest.param("def f():\n    '''Old.'''\n", "f", "'''", id="regenerate-keeps-quotes"),
    ],
)
def test_quote_style(source: str, name: str, expected_quote: str) -> None:
    outcome = generate(prepare(source, name=name), None)
    assert outcome.literal.startswith(expected_quote)
    assert outcome.literal.endswith(expected_quote)


def test_only_the_insertion_changes_the_text() -> None:
    source = "import os\n\n\ndef f(a, b):  # keep me\n    return a\n\n\nZ = 2  \n"
    outcome = generate(prepare(source, name="f"), None)
    edit = outcome.edit
    assert edit.start == edit.end == source.index("    return a")
    assert outcome.new_text[: edit.start] == source[: edit.start]
    assert outcome.new_text[edit.start + len(edit.new_text) :] == source[edit.start :]


def test_regenerate_replaces_only_the_old_docstring() -> None:
    source = 'def f(a):\n    """Old summary."""  # note\n    return a\n'
    job = prepare(source, name="f")
    assert job.regenerate and job.previous_summary == "Old summary."
    outcome = generate(job, None)
    assert outcome.new_text.endswith('"""  # note\n    return a\n')
    assert "Old summary." in outcome.literal  # the skeleton keeps the summary it had
    assert outcome.new_text.count('"""') == 2


def test_prose_is_escaped() -> None:
    job = prepare("def f(a):\n    return a\n", name="f")
    from lsp_server.docstrings import finish

    outcome = finish(
        job,
        {
            "summary": 'Ends with a quote "x"',
            "param:a": 'Has \\n and """ in it.',
            "returns": "Fine.",
        },
    )
    value = ast.get_docstring(ast.parse(outcome.new_text).body[0], clean=False)
    assert value is not None and '"""' in value and "\\n" in value
    assert 'quote "x"' in value


def test_syntax_error_elsewhere_does_not_block() -> None:
    source = "def f(a):\n    return a\n\n\ndef g(:\n    pass\n"
    outcome = generate(prepare(source, name="f"), None)
    assert outcome.new_text.startswith('def f(a):\n    """F.')


def test_placeholders_are_visible() -> None:
    outcome = generate(prepare("def f(a):\n    return a\n", name="f"), None)
    assert outcome.literal.count(PLACEHOLDER) == 2


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        pytest.param("def f(a):\n    return a\n", "    ", id="four-spaces"),
        pytest.param("if x:\n  y\n", "  ", id="two-spaces"),
        pytest.param("class A:\n\tdef f(self):\n\t\tpass\n", "\t", id="tabs"),
        pytest.param("x = 1\n", "    ", id="no-blocks-default"),
        pytest.param("def f(a,\n      b):\n  return a\n", "  ", id="aligned-continuation-ignored"),
        pytest.param("d = {\n  'a': 1}\nif x:  # note\n    y\n", "    ", id="dict-and-comment"),
    ],
)
def test_detect_unit(text: str, unit: str) -> None:
    from lsp_server.docstrings.insertion import detect_unit

    assert detect_unit(text) == unit


@pytest.mark.parametrize(
    ("text", "newline"),
    [
        pytest.param("a\nb\n", "\n", id="lf"),
        pytest.param("a\r\nb\r\n", "\r\n", id="crlf"),
        pytest.param("a\r\nb\nc\n", "\n", id="mostly-lf"),
        pytest.param("", "\n", id="empty"),
    ],
)
def test_detect_newline(text: str, newline: str) -> None:
    from lsp_server.docstrings.insertion import detect_newline

    assert detect_newline(text) == newline
