"""Docstring structure read from the syntax tree: parameters, Returns/Yields, Raises."""

from __future__ import annotations

import pytest

from lsp_server.docstrings import prepare
from lsp_server.docstrings.errors import EmptyFile, NoDefinition, SyntaxErrorInCode
from lsp_server.docstrings.structure import ParamKind

P = ParamKind


def _structure(source: str, name: str):
    return prepare(source, name=name).structure


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        pytest.param(
            "def f(a, b):\n    pass\n",
            "f",
            [
                ("a", P.POSITIONAL_OR_KEYWORD, None, None),
                ("b", P.POSITIONAL_OR_KEYWORD, None, None),
            ],
            id="plain",
        ),
        pytest.param(
            "def f(a: int, b: str = 'x') -> None:\n    pass\n",
            "f",
            [
                ("a", P.POSITIONAL_OR_KEYWORD, "int", None),
                ("b", P.POSITIONAL_OR_KEYWORD, "str", "'x'"),
            ],
            id="hints-and-defaults",
        ),
        pytest.param(
            "def f(a=1, *args, **kwargs):\n    pass\n",
            "f",
            [
                ("a", P.POSITIONAL_OR_KEYWORD, None, "1"),
                ("args", P.VAR_POSITIONAL, None, None),
                ("kwargs", P.VAR_KEYWORD, None, None),
            ],
            id="star-args-kwargs",
        ),
        pytest.param(
            "def f(*args: int, **kw: str):\n    pass\n",
            "f",
            [("args", P.VAR_POSITIONAL, "int", None), ("kw", P.VAR_KEYWORD, "str", None)],
            id="typed-star-args",
        ),
        pytest.param(
            "def f(a, /, b, *, c, d=2):\n    pass\n",
            "f",
            [
                ("a", P.POSITIONAL_ONLY, None, None),
                ("b", P.POSITIONAL_OR_KEYWORD, None, None),
                ("c", P.KEYWORD_ONLY, None, None),
                ("d", P.KEYWORD_ONLY, None, "2"),
            ],
            id="positional-and-keyword-only",
        ),
        pytest.param(
            "def f(*args, key):\n    pass\n",
            "f",
            [("args", P.VAR_POSITIONAL, None, None), ("key", P.KEYWORD_ONLY, None, None)],
            id="keyword-only-after-star-args",
        ),
        pytest.param(
            "class C:\n    def m(self, x):\n        pass\n",
            "C.m",
            [("x", P.POSITIONAL_OR_KEYWORD, None, None)],
            id="method-skips-self",
        ),
        pytest.param(
            "class C:\n    @classmethod\n    def m(cls, x):\n        pass\n",
            "m",
            [("x", P.POSITIONAL_OR_KEYWORD, None, None)],
            id="classmethod-skips-cls",
        ),
        pytest.param(
            "class C:\n    @staticmethod\n    def m(x, y):\n        pass\n",
            "m",
            [
                ("x", P.POSITIONAL_OR_KEYWORD, None, None),
                ("y", P.POSITIONAL_OR_KEYWORD, None, None),
            ],
            id="staticmethod-keeps-first",
        ),
        pytest.param(
            "def f(self, x):\n    pass\n",
            "f",
            [
                ("self", P.POSITIONAL_OR_KEYWORD, None, None),
                ("x", P.POSITIONAL_OR_KEYWORD, None, None),
            ],
            id="self-outside-class-kept",
        ),
        pytest.param(
            "def f(\n    a: dict[str,\n            int],\n    b,\n):\n    pass\n",
            "f",
            [
                ("a", P.POSITIONAL_OR_KEYWORD, "dict[str, int]", None),
                ("b", P.POSITIONAL_OR_KEYWORD, None, None),
            ],
            id="multi-line-signature",
        ),
        pytest.param("def f():\n    pass\n", "f", [], id="no-parameters"),
        pytest.param(
            "class C:\n    def __init__(self, a, b=1):\n        pass\n",
            "C",
            [("a", P.POSITIONAL_OR_KEYWORD, None, None), ("b", P.POSITIONAL_OR_KEYWORD, None, "1")],
            id="class-uses-init",
        ),
        pytest.param(
            "@dataclass\nclass D:\n    a: int\n    b: str = 'x'\n    c: ClassVar[int] = 0\n",
            "D",
            [
                ("a", P.POSITIONAL_OR_KEYWORD, "int", None),
                ("b", P.POSITIONAL_OR_KEYWORD, "str", "'x'"),
            ],
            id="dataclass-fields",
        ),
    ],
)
def test_parameters(source: str, name: str, expected: list[tuple]) -> None:
    params = _structure(source, name).params
    assert [(p.name, p.kind, p.annotation, p.default) for p in params] == expected


@pytest.mark.parametrize(
    ("source", "name", "returns", "yields", "raises"),
    [
        pytest.param("def f(x):\n    return x\n", "f", True, False, (), id="returns-value"),
        pytest.param("def f(x):\n    print(x)\n", "f", False, False, (), id="no-return"),
        pytest.param(
            "def f(x):\n    if x:\n        return\n    print(x)\n",
            "f",
            False,
            False,
            (),
            id="bare-return",
        ),
        pytest.param("def f(x):\n    return None\n", "f", False, False, (), id="return-none"),
        pytest.param(
            "def f(x) -> None:\n    return g(x)\n", "f", False, False, (), id="annotated-none-wins"
        ),
        pytest.param(
            "def f(x):\n    def g():\n        return 1\n    g()\n",
            "f",
            False,
            False,
            (),
            id="nested-return-not-counted",
        ),
        pytest.param(
            "def f(x):\n    h = lambda: 1\n    class K:\n        def m(self):\n"
            "            return 2\n",
            "f",
            False,
            False,
            (),
            id="lambda-and-class-ignored",
        ),
        pytest.param("def f(x):\n    yield x\n", "f", False, True, (), id="generator"),
        pytest.param("async def f(x):\n    yield x\n", "f", False, True, (), id="async-generator"),
        pytest.param(
            "async def f(x):\n    return await g(x)\n", "f", True, False, (), id="async-returns"
        ),
        pytest.param(
            "def f(x):\n    if x:\n        raise ValueError('no')\n    raise errors.Bad\n",
            "f",
            False,
            False,
            ("ValueError", "errors.Bad"),
            id="raises",
        ),
        pytest.param(
            "def f(x):\n    try:\n        g()\n    except KeyError:\n        raise\n",
            "f",
            False,
            False,
            (),
            id="re-raise-not-documented",
        ),
        pytest.param(
            "def f(x):\n    raise TypeError('a') from None\n    raise TypeError('b')\n",
            "f",
            False,
            False,
            ("TypeError",),
            id="raises-deduplicated",
        ),
        pytest.param(
            "class A:\n    def f(self) -> int:\n        ...\n",
            "f",
            True,
            False,
            (),
            id="stub-with-annotation-returns",
        ),
        pytest.param(
            "class A:\n    def f(self) -> int:\n        raise NotImplementedError\n",
            "f",
            True,
            False,
            ("NotImplementedError",),
            id="abstract-method",
        ),
    ],
)
def test_returns_yields_raises(
    source: str, name: str, returns: bool, yields: bool, raises: tuple[str, ...]
) -> None:
    structure = _structure(source, name)
    assert (structure.returns, structure.yields, structure.raises) == (returns, yields, raises)


@pytest.mark.parametrize(
    ("source", "annotation", "yield_type"),
    [
        pytest.param(
            "def f() -> Iterator[int]:\n    yield 1\n", "Iterator[int]", "int", id="iterator"
        ),
        pytest.param(
            "def f() -> Generator[str, None, None]:\n    yield 'a'\n",
            "Generator[str, None, None]",
            "str",
            id="generator",
        ),
        pytest.param(
            "async def f() -> AsyncIterator[bytes]:\n    yield b''\n",
            "AsyncIterator[bytes]",
            "bytes",
            id="async-iterator",
        ),
        pytest.param("def f():\n    yield 1\n", None, None, id="unannotated"),
    ],
)
def test_yield_type(source: str, annotation: str | None, yield_type: str | None) -> None:
    structure = _structure(source, "f")
    assert (structure.return_type, structure.yield_type) == (annotation, yield_type)


SAMPLE = """\
import os


@decorator(arg=1)
def outer(a, b):
    x = 1

    def inner(c):
        return c

    return inner(a)


class Box:
    def get(self):
        return 1
"""


def _offset(text: str, needle: str, delta: int = 0) -> int:
    return text.index(needle) + delta


@pytest.mark.parametrize(
    ("needle", "delta", "header_only", "expected"),
    [
        pytest.param("def outer", 4, False, "outer", id="on-function-name"),
        pytest.param("@decorator", 1, False, "outer", id="on-decorator"),
        pytest.param("x = 1", 0, False, "outer", id="in-body"),
        pytest.param("def inner", 5, False, "inner", id="nested-function"),
        pytest.param("return c", 0, False, "inner", id="nested-body"),
        pytest.param("class Box", 2, False, "Box", id="class"),
        pytest.param("def get", 4, True, "get", id="method-header"),
        pytest.param("return 1", 0, False, "get", id="method-body"),
    ],
)
def test_definition_at(needle: str, delta: int, header_only: bool, expected: str) -> None:
    job = prepare(SAMPLE, offset=_offset(SAMPLE, needle, delta), header_only=header_only)
    assert job.structure.name == expected


@pytest.mark.parametrize(
    ("text", "where", "header_only", "error", "message"),
    [
        pytest.param("", None, False, EmptyFile, "empty", id="empty-file"),
        pytest.param("\n  \n", None, False, EmptyFile, "empty", id="blank-file"),
        pytest.param(
            SAMPLE, "import os", False, NoDefinition, "not on a function", id="cursor-on-import"
        ),
        pytest.param(
            SAMPLE, "x = 1", True, NoDefinition, "not on a function", id="code-action-in-body"
        ),
        pytest.param(
            "def f(a, b:\n    return a\n",
            "def f",
            False,
            NoDefinition,
            "syntax error",
            id="broken-signature",
        ),
        pytest.param(
            "def f(a):\n    return a +\n",
            "def f",
            False,
            SyntaxErrorInCode,
            "syntax error at line 2",
            id="broken-body",
        ),
    ],
)
def test_bad_input_has_clear_error(
    text: str, where: str | None, header_only: bool, error: type, message: str
) -> None:
    offset = text.index(where) if where else 0
    with pytest.raises(error, match=message):
        prepare(text, offset=offset, header_only=header_only)


def test_unknown_name_is_an_error() -> None:
    with pytest.raises(NoDefinition, match="named 'nope'"):
        prepare(SAMPLE, name="nope")
