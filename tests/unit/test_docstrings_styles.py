"""Docstring styles: detection, configuration, rendering and reading back."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.docstrings import finish, prepare, project_docstrings
from lsp_server.docstrings.styles import (
    Style,
    detect_style,
    parse_docstring,
    resolve_style,
    style_of,
)

GOOGLE = '''"""Add.

    Args:
        a (int): First.

    Returns:
        int: Sum.
    """'''
NUMPY = '''"""Add.

    Parameters
    ----------
    a : int
        First.
    """'''
SPHINX = '''"""Add.

    :param a: First.
    :type a: int
    :returns: Sum.
    """'''


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        pytest.param(GOOGLE, Style.GOOGLE, id="google"),
        pytest.param(NUMPY, Style.NUMPY, id="numpy"),
        pytest.param(SPHINX, Style.SPHINX, id="sphinx"),
        pytest.param('"""Just a summary."""', None, id="no-sections"),
        pytest.param('"""Return x.\n\n    >>> f(1)\n    1\n    """', None, id="doctest-only"),
        pytest.param('"""Args: none here."""', None, id="section-word-in-prose"),
    ],
)
def test_style_of(docstring: str, expected: Style | None) -> None:
    assert style_of(docstring) == expected


@pytest.mark.parametrize(
    ("setting", "file_docs", "project_docs", "expected"),
    [
        pytest.param("auto", [], [], Style.GOOGLE, id="default-google"),
        pytest.param(None, [], [], Style.GOOGLE, id="unset-default-google"),
        pytest.param("auto", [NUMPY, NUMPY, GOOGLE], [], Style.NUMPY, id="file-majority"),
        pytest.param("auto", [], [SPHINX], Style.SPHINX, id="project-when-file-silent"),
        pytest.param("auto", [GOOGLE], [SPHINX, SPHINX], Style.GOOGLE, id="file-beats-project"),
        pytest.param("numpy", [GOOGLE, GOOGLE], [], Style.NUMPY, id="setting-wins"),
        pytest.param("SPHINX", [], [], Style.SPHINX, id="setting-case-insensitive"),
        pytest.param("bogus", [NUMPY], [], Style.NUMPY, id="bad-setting-means-auto"),
    ],
)
def test_resolve_style(setting, file_docs, project_docs, expected) -> None:
    assert resolve_style(setting, file_docs, project_docs) == expected


def test_detect_style_ties_prefer_google() -> None:
    assert detect_style([NUMPY, GOOGLE]) == Style.GOOGLE


def test_style_detected_from_the_file() -> None:
    source = f"def g(a):\n    {NUMPY}\n    return a\n\n\ndef f(x):\n    return x\n"
    assert prepare(source, name="f").style is Style.NUMPY


def test_style_detected_from_the_project(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(f"def g(a):\n    {SPHINX}\n    return a\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "lib.py").write_text(f"def g(a):\n    {NUMPY}\n")
    found = project_docstrings(tmp_path)
    assert len(found) == 1
    job = prepare("def f(x):\n    return x\n", name="f", project_docstrings=found)
    assert job.style is Style.SPHINX


SOURCE = (
    "def f(a: int, /, b: str = 'x', *args: float, key, **kwargs) -> dict[str, int]:\n"
    "    if a:\n        raise ValueError(a)\n    return {}\n"
)
PROSE = {
    "summary": "Build a table of counts from the inputs given to it by the caller of this code.",
    "param:a": "How many items to count, which is a rather long description that needs wrapping "
    "over more than one line at the usual width.",
    "param:b": "A label.",
    "param:*args": "Weights.",
    "param:key": "The key.",
    "param:**kwargs": "Extra options.",
    "returns": "The counts.",
    "raises:ValueError": "If a is bad.",
}


@pytest.mark.parametrize("style", ["google", "numpy", "sphinx"])
def test_render_then_parse_round_trip(style: str) -> None:
    job = prepare(SOURCE, name="f", style=style)
    outcome = finish(job, PROSE)
    assert all(len(line.expandtabs(4)) <= 88 for line in outcome.literal.split("\n"))
    parsed = parse_docstring(outcome.literal)
    assert parsed.style == Style(style)
    assert parsed.summary == PROSE["summary"]
    assert set(parsed.params) == {"a", "b", "*args", "key", "**kwargs"}
    assert parsed.params["a"] == ("int", PROSE["param:a"])
    assert parsed.params["b"][0] == "str"
    assert parsed.params["**kwargs"][1] == "Extra options."
    assert parsed.returns == "The counts."
    assert parsed.return_type == "dict[str, int]"
    assert parsed.raises == {"ValueError": "If a is bad."}


@pytest.mark.parametrize(
    ("docstring", "params", "returns"),
    [
        pytest.param(
            '"""Check if in given list of numbers, are any two numbers closer.\n'
            '    >>> f([1.0], 0.5)\n    False\n    """',
            {},
            None,
            id="humaneval-prose",
        ),
        pytest.param(
            '"""S.\n\n    Arguments:\n        x: one\n            more.\n        y: two.\n    """',
            {"x": (None, "one more."), "y": (None, "two.")},
            None,
            id="google-continuation",
        ),
        pytest.param(
            '"""S.\n\n    :param int x: one.\n    :rtype: bool\n    """',
            {"x": ("int", "one.")},
            "",
            id="sphinx-inline-type",
        ),
        pytest.param(
            '"""S.\n\n    Returns\n    -------\n    out : list\n        Things.\n    """',
            {},
            "Things.",
            id="numpy-named-return",
        ),
    ],
)
def test_parse_other_docstrings(docstring: str, params: dict, returns: str | None) -> None:
    parsed = parse_docstring(docstring)
    assert parsed.params == params
    assert parsed.returns == returns
