"""training/extract.py: which functions count as standalone, and the prompt/body split."""

from __future__ import annotations

import textwrap

import pytest

from training import extract

MODULE = textwrap.dedent('''\
    import math
    import os.path
    from collections import Counter as C
    import numpy as np
    from .sibling import helper

    LIMIT = 10


    def area(r):
        """Area of a circle.

        >>> round(area(1), 2)
        3.14
        """
        return math.pi * r * r


    def count(xs):
        """Counts.

        >>> count("aab")["a"]
        2
        """
        # comment kept in the body
        return C(xs)


    def uses_constant(x):
        """Clamp.

        >>> uses_constant(20)
        10
        """
        return min(x, LIMIT)


    def uses_numpy(x):
        """Array.

        >>> uses_numpy(1)
        1
        """
        return np.asarray(x)


    def uses_sibling(x):
        """Relative import.

        >>> uses_sibling(1)
        1
        """
        return helper(x)


    def calls_area(r):
        """Calls another function of the module.

        >>> calls_area(1) > 3
        True
        """
        return area(r)


    def writes_global(x):
        """Global state.

        >>> writes_global(1)
        1
        """
        global LIMIT
        LIMIT = x
        return x


    def local_import(p):
        """Imports inside are fine when stdlib.

        >>> local_import("a/b")
        'b'
        """
        import posixpath
        return posixpath.basename(p)


    def bad_local_import(p):
        """Imports a package inside.

        >>> bad_local_import(1)
        1
        """
        import requests
        return requests


    def nested_scopes(xs):
        """Closures and comprehensions see only their own names.

        >>> nested_scopes([1, 2])
        [2, 4]
        """
        factor = 2
        def times(x):
            return x * factor
        return [times(x) for x in xs]


    def no_examples(x):
        """No examples here."""
        return x


    def no_docstring(x):
        return x


    def trivial(x):
        """Abstract.

        >>> trivial(1)
        1
        """
        raise NotImplementedError


    def default_from_module(x=LIMIT):
        """Default value from the module.

        >>> default_from_module()
        10
        """
        return x


    async def coro(x):
        """Async.

        >>> coro(1)
        1
        """
        return x


    class Tools:
        @staticmethod
        def double(x):
            """Twice.

            >>> Tools.double(2)
            4
            """
            return 2 * x

        def method(self):
            """Method.

            >>> 1
            1
            """
            return self
''')


def _by_name() -> dict[str, extract.Candidate | extract.Rejected]:
    return {item.qualname: item for item in extract.extract(MODULE, source="t", path="m.py")}


@pytest.mark.parametrize("name", [
    pytest.param("area", id="stdlib-module"),
    pytest.param("count", id="from-import-alias"),
    pytest.param("local_import", id="stdlib-import-inside"),
    pytest.param("nested_scopes", id="closure-and-comprehension"),
    pytest.param("Tools.double", id="staticmethod"),
])
def test_standalone_functions_are_kept(name: str) -> None:
    assert isinstance(_by_name()[name], extract.Candidate)


@pytest.mark.parametrize("name, reason", [
    pytest.param("uses_constant", extract.REJECT_NOT_STANDALONE, id="module-constant"),
    pytest.param("uses_numpy", extract.REJECT_NOT_STANDALONE, id="third-party-import"),
    pytest.param("uses_sibling", extract.REJECT_NOT_STANDALONE, id="relative-import"),
    pytest.param("calls_area", extract.REJECT_NOT_STANDALONE, id="calls-module-function"),
    pytest.param("writes_global", extract.REJECT_NOT_STANDALONE, id="global-statement"),
    pytest.param("bad_local_import", extract.REJECT_NOT_STANDALONE, id="third-party-inside"),
    pytest.param("default_from_module", extract.REJECT_NOT_STANDALONE, id="default-from-module"),
    pytest.param("no_examples", extract.REJECT_NO_EXAMPLES, id="no-examples"),
    pytest.param("no_docstring", extract.REJECT_NO_DOCSTRING, id="no-docstring"),
    pytest.param("trivial", extract.REJECT_TRIVIAL, id="not-implemented"),
    pytest.param("coro", extract.REJECT_ASYNC, id="async"),
    pytest.param("Tools.method", extract.REJECT_KIND, id="method"),
])
def test_rejections_say_why(name: str, reason: str) -> None:
    item = _by_name()[name]
    assert isinstance(item, extract.Rejected)
    assert item.reason == reason


def test_prompt_is_imports_signature_docstring_and_body_is_the_rest() -> None:
    item = _by_name()["count"]
    assert isinstance(item, extract.Candidate)
    assert item.prompt == (
        "from collections import Counter as C\n\n\n"
        "def count(xs):\n"
        '    """Counts.\n\n    >>> count("aab")["a"]\n    2\n    """\n'
    )
    assert item.body == "    # comment kept in the body\n    return C(xs)\n"
    assert item.code == item.prompt + item.body


def test_only_the_imports_a_function_uses_are_in_its_prompt() -> None:
    item = _by_name()["area"]
    assert isinstance(item, extract.Candidate)
    assert item.imports == "import math"


def test_staticmethod_is_dedented_to_a_module_function() -> None:
    item = _by_name()["Tools.double"]
    assert isinstance(item, extract.Candidate)
    assert item.prompt.startswith("def double(x):\n    \"\"\"Twice.")
    assert item.body == "    return 2 * x\n"


def test_a_later_module_binding_shadows_an_import() -> None:
    source = textwrap.dedent('''\
        import json
        json = None


        def dump(x):
            """Dump.

            >>> dump(1)
            '1'
            """
            return json.dumps(x)
        ''')
    (item,) = extract.extract(source, source="t", path="m.py")
    assert isinstance(item, extract.Rejected)
    assert item.reason == extract.REJECT_NOT_STANDALONE


def test_unparseable_files_yield_nothing() -> None:
    assert list(extract.extract("print 'python 2'\n", source="t", path="m.py")) == []


def test_tab_indented_bodies_are_rejected_for_layout() -> None:
    source = 'def f(x):\n\t"""Doc.\n\n\t>>> f(1)\n\t1\n\t"""\n\treturn x\n'
    (item,) = extract.extract(source, source="t", path="m.py")
    assert isinstance(item, extract.Rejected)
    assert item.reason == extract.REJECT_LAYOUT


def test_strip_comments_ignores_comments_and_layout() -> None:
    a = "def f(x):\n    # why\n    return x  # done\n"
    b = "def f(x):\n\n    return x\n"
    assert extract.strip_comments(a) == extract.strip_comments(b)
    assert extract.strip_comments(a) != extract.strip_comments("def f(x):\n    return -x\n")
