"""Table tests for the function-level prompt context (Codex paper)."""

from __future__ import annotations

import pytest

from lsp_server.parsing.syntax import parse_text
from lsp_server.prompts.context import (
    PromptContext,
    build_context,
    cursor_indent,
    enclosing_definitions,
    indent_width,
    stub,
)

CURSOR = "\u2038"  # marks the cursor in a source table entry


def at_cursor(marked: str) -> tuple[str, bytes, int]:
    """Source without the marker, its bytes, and the marker's byte offset."""
    index = marked.index(CURSOR)
    text = marked.replace(CURSOR, "", 1)
    return text, text.encode("utf-8"), len(text[:index].encode("utf-8"))


def context_of(marked: str) -> PromptContext:
    text, source, cursor = at_cursor(marked)
    return build_context(parse_text(text), source, cursor)


MODULE = '''import os
from typing import List

def helper(a: int) -> int:
    """Add one."""
    return a + 1

class Util:
    """Utils."""
    def go(self): return 1

def unused():
    pass

def main(xs: List[int]):
    y = helper(1)
    u = Util()
    ‸
    return y
'''

STACK = '''class Stack:
    """A stack."""
    size = 0

    def __init__(self):
        self.items = []

    @property
    def top(self):
        return self.items[-1]

    def push(self, item):
        ‸

    def pop(self):
        return self.items.pop()
'''

HUMANEVAL = '''from typing import List


def has_close(numbers: List[float], threshold: float) -> bool:
    """ Check if any two numbers are closer than threshold.
    >>> has_close([1.0, 2.0], 0.5)
    False
    """
‸'''


@pytest.mark.parametrize(
    ("marked", "expected"),
    [
        pytest.param(
            MODULE,
            PromptContext(
                imports="import os\nfrom typing import List",
                definitions=(
                    'def helper(a: int) -> int:\n    """Add one."""\n    ...',
                    'class Util:\n    """Utils."""\n    def go(self):\n        ...',
                ),
                scope_header="",
                current="def main(xs: List[int]):\n    y = helper(1)\n    u = Util()\n    ",
                suffix="\n    return y\n",
                block_indent="",
                function_indent="",
                in_function=True,
            ),
            id="imports-used-definitions-one-line-member",
        ),
        pytest.param(
            STACK,
            PromptContext(
                imports="",
                definitions=(),
                scope_header=(
                    'class Stack:\n    """A stack."""\n    size = 0\n'
                    "    def __init__(self):\n        ...\n"
                    "    @property\n    def top(self):\n        ...\n"
                    "    def push(self, item):\n        ...\n"
                    "    def pop(self):\n        ..."
                ),
                current="    def push(self, item):\n        ",
                suffix="\n\n    def pop(self):\n        return self.items.pop()\n",
                block_indent="    ",
                function_indent="    ",
                in_function=True,
            ),
            id="method-class-header-all-signatures",
        ),
        pytest.param(
            HUMANEVAL,
            PromptContext(
                imports="from typing import List",
                definitions=(),
                scope_header="",
                current=(
                    "def has_close(numbers: List[float], threshold: float) -> bool:\n"
                    '    """ Check if any two numbers are closer than threshold.\n'
                    '    >>> has_close([1.0, 2.0], 0.5)\n    False\n    """\n'
                ),
                suffix="",
                block_indent="",
                function_indent="",
                in_function=True,
            ),
            id="humaneval-docstring-only-body-column-0",
        ),
        pytest.param(
            "def outer():\n    def inner(x):\n        return ‸\n    return inner\n",
            PromptContext(
                imports="",
                definitions=(),
                scope_header="",
                current="def outer():\n    def inner(x):\n        return ",
                suffix="\n    return inner\n",
                block_indent="    ",
                function_indent="",
                in_function=True,
            ),
            id="nested-function-from-outer-def",
        ),
        pytest.param(
            "import asyncio\n\nasync def fetch(url):\n    await ‸\n",
            PromptContext(
                imports="import asyncio",
                definitions=(),
                scope_header="",
                current="async def fetch(url):\n    await ",
                suffix="\n",
                block_indent="",
                function_indent="",
                in_function=True,
            ),
            id="async-def",
        ),
        pytest.param(
            "import re\n\nx = 1\ny = ‸",
            PromptContext(
                imports="",
                definitions=(),
                scope_header="",
                current="import re\n\nx = 1\ny = ",
                suffix="",
                block_indent="",
                function_indent="",
                in_function=False,
            ),
            id="module-level-imports-already-in-current",
        ),
        pytest.param(
            "def f(\n    a,\n    b,\n):\n    ‸",
            PromptContext("", (), "", "def f(\n    a,\n    b,\n):\n    ", "", "", "", True),
            id="multi-line-signature",
        ),
        pytest.param(
            "class A:\n\tdef m(self):\n\t\tif x:\n\t\t\t‸",
            PromptContext(
                "", (), "class A:\n\tdef m(self):\n\t\t...", "\tdef m(self):\n\t\tif x:\n\t\t\t", "",
                "\t\t", "\t", True,
            ),
            id="tabs",
        ),
        pytest.param(
            "@decorator(1)\n@other\ndef g(x):\n    return ‸",
            PromptContext(
                "", (), "", "@decorator(1)\n@other\ndef g(x):\n    return ", "", "", "", True
            ),
            id="decorators-start-current",
        ),
        pytest.param(
            "@cache\ndef helper(n):\n    return n\n\ndef main():\n    return helper(‸)\n",
            PromptContext(
                "",
                ("@cache\ndef helper(n):\n    ...",),
                "",
                "def main():\n    return helper(",
                ")\n",
                "",
                "",
                True,
            ),
            id="decorated-used-definition",
        ),
        pytest.param(
            "def f(x):\n    return x\n‸\ndef g():\n    pass\n",
            PromptContext(
                "", (), "", "def f(x):\n    return x\n", "\ndef g():\n    pass\n", "", "", False
            ),
            id="after-finished-function-is-module-level",
        ),
        pytest.param(
            "class K:\n    a = 1\n    ‸\n",
            PromptContext("", (), "", "class K:\n    a = 1\n    ", "\n", "", "    ", False),
            id="class-body-outside-methods",
        ),
        pytest.param(
            "class A:\n    def m(self):\n        def inner():\n            ‸\n",
            PromptContext(
                "",
                (),
                "class A:\n    def m(self):\n        ...",
                "    def m(self):\n        def inner():\n            ",
                "\n",
                "        ",
                "    ",
                True,
            ),
            id="function-nested-in-method",
        ),
        pytest.param(
            "def f(x):\n    return [\n        x,\n        ‸\n    ]\n",
            PromptContext(
                "",
                (),
                "",
                "def f(x):\n    return [\n        x,\n        ",
                "\n    ]\n",
                "    ",
                "",
                True,
            ),
            id="inside-brackets",
        ),
        pytest.param(
            "def f(x):‸",
            PromptContext("", (), "", "def f(x):", "", "", "", True),
            id="on-header-line",
        ),
    ],
)
def test_build_context(marked: str, expected: PromptContext) -> None:
    assert context_of(marked) == expected


def test_pieces_stable_first() -> None:
    context = PromptContext(
        "import os",
        ("def a():\n    ...",),
        "class C:",
        "    def m(self):\n        ",
        "",
        "",
        "    ",
        True,
        outline="def a(): ...\nclass C: ...",
    )
    assert context.pieces() == [
        "import os",
        "def a(): ...\nclass C: ...",
        "class C:",
        "def a():\n    ...",
        "    def m(self):\n        ",
    ]


def test_outline_of_a_file_with_many_definitions() -> None:
    from lsp_server.prompts.context import OUTLINE_MIN_DEFINITIONS, outline

    defs = [f"def f{i}(x):\n    return x\n" for i in range(OUTLINE_MIN_DEFINITIONS)]
    source = ("import os\n\n" + "\n".join(defs) + "\n@dec\nclass K(Base):\n    y = 1\n").encode()
    tree = parse_text(source.decode())
    expected = "\n".join(
        [f"def f{i}(x): ..." for i in range(OUTLINE_MIN_DEFINITIONS)] + ["class K(Base): ..."]
    )
    assert outline(tree, source) == expected
    small = "\n".join(defs[:3]).encode()
    assert outline(parse_text(small.decode()), small) == ""
    # The same wherever the cursor is: it is in the context of every function.
    marked = source.decode().replace("return x\n", "return ‸\n", 1)
    assert context_of(marked).outline == expected


@pytest.mark.parametrize(
    ("marked", "names"),
    [
        pytest.param("def f():\n    x = 1\n    ‸\n", ["f"], id="in-body"),
        pytest.param(
            "class C:\n    def m(self):\n        ‸\n", ["m", "C"], id="method-innermost-first"
        ),
        pytest.param("def f():\n    x = 1\n‸\n", [], id="column-0-after-real-body"),
        pytest.param('def f():\n    """D."""\n‸', ["f"], id="column-0-after-docstring-body"),
        pytest.param("‸\ndef f():\n    pass\n", [], id="before-everything"),
        pytest.param(
            "def f():\n    x = 1\n‸        \n", ["f"], id="line-start-of-indented-blank-line"
        ),
        pytest.param(
            "class C:\n    def m(self):\n        x = 1\n‸\n        return x\n",
            ["m", "C"],
            id="empty-line-inside-body",
        ),
        pytest.param(
            "class C:\n    def m(self):\n        x = 1\n‸\n    def n(self):\n        pass\n",
            ["C"],
            id="empty-line-between-methods",
        ),
        pytest.param(
            "def f():\n    x = 1\n‸    \ndef g():\n    pass\n",
            ["f"],
            id="indented-blank-line-after-body",
        ),
        pytest.param("def f(a,\n      b‸):\n    pass\n", ["f"], id="inside-multi-line-signature"),
    ],
)
def test_enclosing_definitions(marked: str, names: list[str]) -> None:
    text, source, cursor = at_cursor(marked)
    found = enclosing_definitions(parse_text(text), source, cursor)
    assert [
        source[
            n.child_by_field_name("name").start_byte : n.child_by_field_name("name").end_byte
        ].decode()
        for n in found
    ] == names


@pytest.mark.parametrize(
    ("marked", "width"),
    [
        pytest.param("x\n    ‸", 4, id="blank-prefix"),
        pytest.param("x\n\t‸", 8, id="tab-is-8"),
        pytest.param("x\n  y = ‸1", 2, id="code-line"),
        pytest.param("‸", 0, id="empty"),
    ],
)
def test_cursor_indent(marked: str, width: int) -> None:
    _, source, cursor = at_cursor(marked)
    assert cursor_indent(source, cursor) == width


@pytest.mark.parametrize(
    ("line", "width"),
    [
        pytest.param("", 0, id="empty"),
        pytest.param("    x", 4, id="spaces"),
        pytest.param("\t  x", 10, id="tab-then-spaces"),
        pytest.param("   ", 3, id="whitespace-only"),
    ],
)
def test_indent_width(line: str, width: int) -> None:
    assert indent_width(line) == width


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "class E(Exception): pass\n", "class E(Exception):\n    ...", id="one-line-class"
        ),
        pytest.param("def f(): return 1\n", "def f():\n    ...", id="one-line-def"),
        pytest.param(
            'class P:\n    """Point."""\n    x: int = 0\n    def norm(self) -> float:\n        return 0.0\n',
            'class P:\n    """Point."""\n    x: int = 0\n    def norm(self) -> float:\n        ...',
            id="class-with-field-and-method",
        ),
        pytest.param("class Q:\n    pass\n", "class Q:\n    ...", id="class-pass"),
    ],
)
def test_stub(source: str, expected: str) -> None:
    tree = parse_text(source)
    node = tree.root_node.named_children[0]
    assert stub(node, source.encode("utf-8")) == expected


def broken_textwrap() -> tuple[bytes, int]:
    """The stdlib's textwrap.py with ``shorten``'s body being retyped: ``w = TextWrapper(``."""
    import textwrap

    text = open(textwrap.__file__, encoding="utf-8").read()
    start = text.index("def shorten(")
    body = text.index('"""\n', text.index('"""', start) + 3) + 4
    end = text.index("\n\n\n", body)
    typed = "    w = TextWrapper("
    source = (text[:body] + typed + text[end:]).encode()
    return source, len(text[:body].encode()) + len(typed)


def test_an_open_bracket_that_breaks_the_whole_module_keeps_the_head() -> None:
    """While ``TextWrapper(`` is being typed, tree-sitter wraps the module in one ERROR
    node; the imports and used definitions must stay in the prompt (the KV cache behind
    them too): the latency replay re-evaluated whole prompts here."""
    source, cursor = broken_textwrap()
    tree = parse_text(source.decode())
    assert [node.type for node in tree.root_node.named_children] == ["ERROR"]  # precondition
    context = build_context(tree, source, cursor)
    closed = source[:cursor] + b")" + source[cursor:]
    healthy = build_context(parse_text(closed.decode()), closed, cursor)
    assert context.imports == healthy.imports == "import re"  # textwrap imports only re
    assert context.definitions == healthy.definitions
    assert context.definitions and context.definitions[0].startswith("class TextWrapper:")


# -- the class of a method, by indentation (a broken tree can lose it) --------------------

_CLASSES = b'''import os


class Reader(Base):
    """Reads things."""

    limit = 10

    def open(self, path):
        return open(path)

    @property
    def name(self):
        return self._name


def helper():
    if True:
        def inner():
            pass
    return 1


class Outer:
    class Inner:
        def deep(self):
            pass
'''


def test_a_methods_class_header_is_found_by_indentation_and_parsed_on_its_own() -> None:
    from lsp_server.prompts.context import class_header, class_header_by_indentation

    method = _CLASSES.index(b"@property")  # where its node starts
    header = class_header_by_indentation(_CLASSES, method)
    tree = parse_text(_CLASSES.decode())
    reader = next(n for n in tree.root_node.named_children if n.type == "class_definition")
    # What a clean parse of the whole file gives, and nothing after the class.
    assert header == class_header(reader, _CLASSES, exclude=None)
    assert header.startswith("class Reader(Base):") and "def name(self):" in header
    assert "limit = 10" in header and "helper" not in header


def test_no_class_header_by_indentation_outside_a_top_level_class() -> None:
    from lsp_server.prompts.context import class_header_by_indentation

    assert class_header_by_indentation(_CLASSES, _CLASSES.index(b"def helper")) == ""  # not indented
    assert class_header_by_indentation(_CLASSES, _CLASSES.index(b"def inner")) == ""  # in a block
    assert class_header_by_indentation(_CLASSES, _CLASSES.index(b"def deep")) == ""  # nested class


_LOST = '''import re


def helper(text):
    return text.strip()


class Reader:
    """Reads."""

    limit = 10

    def first(self):
        return 1

    @staticmethod
    @property
    def handler(self):
        # the body was emptied down to this comment
        {cursor}

    def last(self):
        return helper(self)
'''


@pytest.mark.parametrize("typed", [
    "",  # a body of only a comment: an empty block, an error to tree-sitter
    "if re.match('x', helper(self)) and \\\n            ",  # a half-typed continuation
])  # fmt: skip
def test_a_function_the_tree_lost_is_found_by_indentation(typed: str) -> None:
    """Where the tree has no function around the cursor but the lines above plainly open
    one, the prompt is that function's, with the class header and the used definitions,
    not the module level (which shared nothing with the prompts around it)."""
    context = context_of(_LOST.replace("{cursor}", typed + CURSOR))
    assert context.in_function
    assert context.current.startswith("    @staticmethod\n    @property\n    def handler(self):\n")
    assert context.current.endswith(typed)
    assert context.function_indent == "    "
    assert context.scope_header.startswith("class Reader:") and "def first(self):" in context.scope_header
    assert context.imports == "import re"
    if typed:
        assert context.definitions == ("def helper(text):\n    ...",)  # its stub


def test_no_function_by_indentation_where_the_lines_above_open_something_else() -> None:
    from lsp_server.prompts.context import function_start_by_indentation

    for marked in (
        "if __name__ == '__main__':\n    main(\n    " + CURSOR,  # a module-level block
        "class A:\n    x = (\n    " + CURSOR,  # a class body
        "x = 1\n" + CURSOR,  # column 0
    ):
        _, source, cursor = at_cursor(marked)
        assert function_start_by_indentation(source, cursor) is None, marked
    _, source, cursor = at_cursor("def f(a):\n    if a:\n        while a and \\\n                " + CURSOR)
    assert function_start_by_indentation(source, cursor) == 0


KNOWN_SOURCE = (
    "import os\n\n\ndef a():\n    pass\n\n\ndef b():\n    pass\n\n\ndef c():\n    pass\n\n\n"
    "@dataclass\nclass Box:\n    size: int\n\n    def grow(self, by):\n        total = os.path.join(\u2038\n"
)


def test_a_known_head_is_taken_instead_of_built() -> None:
    """With ``known`` (the engine passes it for a tree with errors), the imports, outline
    and class header are the known ones, the class asked for by its class line; a class
    not known is built as without."""
    from lsp_server.prompts.context import KnownHead

    text, source, cursor = at_cursor(KNOWN_SOURCE)
    tree = parse_text(text)
    assert tree.root_node.has_error
    asked: list[str] = []

    def header_for(line: str) -> str | None:
        asked.append(line)
        return "class Box:  # known" if line == "class Box:" else None

    taken = build_context(tree, source, cursor, known=KnownHead(("import known", "def known(): ..."), header_for))
    assert (taken.imports, taken.outline, taken.scope_header) == (
        "import known", "def known(): ...", "class Box:  # known")
    assert asked == ["class Box:"]
    built = build_context(tree, source, cursor)
    unknown = build_context(tree, source, cursor, known=KnownHead(None, lambda line: None))
    assert unknown == built and built.scope_header.startswith("@dataclass\nclass Box:")
    assert (taken.current, taken.definitions, taken.suffix) == (built.current, built.definitions, built.suffix)


def test_prompts_with_the_known_head_equal_those_built_then_settled() -> None:
    """What the engine does (``known`` where the tree has errors) gives, once settled,
    the context that building everything and then settling gave, at every request of a
    typing replay of textwrap.py."""
    import sysconfig
    from pathlib import Path

    from lsp_server.engine import plan
    from lsp_server.evaluation import typing_replay
    from lsp_server.evaluation.latency import _edit_to
    from lsp_server.parsing.document import Document
    from lsp_server.prompts.held import StableHeaders
    from lsp_server.prompts.snapshot import Snapshot

    path = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
    text = path.read_text(encoding="utf-8")
    document = Document(uri=path.as_uri(), text=text, language_id="python")
    built_then_settled, with_known = StableHeaders(), StableHeaders()
    compared = took_known = 0
    for edit in typing_replay.session(text, functions=3):
        text = typing_replay.apply(text, edit)
        _edit_to(document, text)
        if not edit.request or edit.kind == "restore":
            continue
        cursor = edit.start + len(edit.new_text)
        snapshot = Snapshot.of(document)
        clean = not snapshot.tree.root_node.has_error
        known = None if clean else with_known.known(snapshot.uri)
        old, new = plan(snapshot, cursor, explicit=False), plan(snapshot, cursor, explicit=False, known=known)
        assert (old.mode, old.start) == (new.mode, new.start)
        if old.context is None:
            assert new.context is None
            continue
        took_known += new.context != old.context
        assert (built_then_settled.settle(snapshot.uri, old.context, clean=clean)
                == with_known.settle(snapshot.uri, new.context, clean=clean))
        compared += 1
    assert compared > 50 and took_known > 0
