"""The Codex-D evaluation's own logic: stripping, scoring with ``ast``, back-translation
plumbing (stand-in model and body; the sandbox is real)."""

from __future__ import annotations

import ast
from dataclasses import dataclass

import pytest

from lsp_server.backends.base import GenerationRequest, GenerationResult
from lsp_server.docstrings.styles import parse_docstring
from lsp_server.evaluation import docstring_eval as de
from lsp_server.evaluation.tasks import Task

PROMPT = '''from typing import List


def helper(x):
    """Keep me."""
    return x


def add(a: int, b: List[int]) -> int:
    """ Add a to every element of b and sum.
    >>> add(1, [1, 2])
    5
    """
'''
SOLUTION = "    return sum(a + x for x in b)\n"
TASK = Task(
    task_id="T/0",
    prompt=PROMPT,
    entry_point="add",
    canonical_solution=SOLUTION,
    test="def check(candidate):\n    assert candidate(1, [1, 2]) == 5\n",
)


def test_strip_docstring_removes_only_the_entry_points() -> None:
    stripped, original = de.strip_docstring(PROMPT + SOLUTION, "add")
    assert original.startswith('""" Add a to every') and original.endswith('"""')
    assert '"""Keep me."""' in stripped and "Add a to every" not in stripped
    assert stripped.endswith(
        "def add(a: int, b: List[int]) -> int:\n    return sum(a + x for x in b)\n"
    )
    ast.parse(stripped)


def _function(source: str) -> ast.FunctionDef:
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


FUNCTION = "def f(a: int, b, *rest: str, key=None, **extra):\n    return a\n"


@pytest.mark.parametrize(
    ("docstring", "documented", "described", "invented", "returns_ok", "exact"),
    [
        pytest.param(
            "S.\n\nArgs:\n    a (int): A.\n    b: B.\n    *rest (str): R.\n    key: K.\n"
            "    **extra: E.\n\nReturns:\n    int: R.\n",
            5,
            5,
            0,
            True,
            True,
            id="complete",
        ),
        pytest.param(
            "S.\n\nArgs:\n    a (int): A.\n    b: B.\n\nReturns:\n    int: R.\n",
            2,
            2,
            0,
            True,
            False,
            id="missing-params",
        ),
        pytest.param(
            "S.\n\nArgs:\n    a (str): A.\n    b: B.\n    rest: R.\n    key: K.\n"
            "    extra: E.\n    c: C.\n\nReturns:\n    x\n",
            4,
            4,
            1,
            True,
            False,
            id="wrong-type-and-invented",
        ),
        pytest.param(
            "S.\n\nArgs:\n    a (int): TODO: describe.\n    b: B.\n    *rest (str): R.\n"
            "    key: K.\n    **extra: E.\n",
            5,
            4,
            0,
            False,
            False,
            id="placeholder-and-no-returns",
        ),
        pytest.param("Just prose about the function.", 0, 0, 0, False, False, id="prose-only"),
    ],
)
def test_score_docstring(
    docstring: str, documented: int, described: int, invented: int, returns_ok: bool, exact: bool
) -> None:
    score = de.score_docstring(parse_docstring(docstring), _function(FUNCTION))
    assert (score.params, score.documented, score.described, score.invented) == (
        5,
        documented,
        described,
        invented,
    )
    assert (score.returns_ok, score.exact) == (returns_ok, exact)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("def f():\n    return 1\n", True, id="value"),
        pytest.param("def f():\n    return\n", False, id="bare"),
        pytest.param("def f():\n    return None\n", False, id="none"),
        pytest.param(
            "def f():\n    g = lambda: 1\n    def h():\n        return 2\n", False, id="nested-only"
        ),
        pytest.param("def f() -> None:\n    return print()\n", False, id="annotated-none"),
    ],
)
def test_returns_value_per_ast(source: str, expected: bool) -> None:
    assert de._returns_value(_function(source)) is expected


def test_with_docstring_replaces_the_original_in_the_prompt() -> None:
    texts = {
        "summary": "Sum b after adding a.",
        "param:a": "Offset.",
        "param:b": "Numbers.",
        "returns": "The total.",
    }
    new_prompt = de.with_docstring(PROMPT, "add", texts, "google")
    assert "Sum b after adding a." in new_prompt and ">>> add" not in new_prompt
    assert '"""Keep me."""' in new_prompt
    assert new_prompt.endswith('        int: The total.\n    """\n')


@dataclass
class Body:
    """A stand-in body writer: returns the given code after the cursor."""

    code: str

    def __call__(self, text: str, cursor: int) -> Body:
        self.cursor = cursor
        return self

    def apply(self, text: str) -> str:
        return text[: self.cursor] + self.code + text[self.cursor :]


def _model(request: GenerationRequest) -> GenerationResult:
    last = request.prompt.rstrip().rsplit("\n", 1)[-1]
    answers = {
        '"""': "\n    Add a to each of b and sum.",
        "a (int):": " The offset.",
        "b (List[int]):": " The numbers.",
        "int:": " The total.",
    }
    for ending, answer in answers.items():
        if last.endswith(ending):
            return GenerationResult(text=answer)
    return GenerationResult(text="\n    Adds numbers.\n    ")


@pytest.mark.parametrize(
    ("body", "passes"),
    [
        pytest.param(SOLUTION, True, id="right-body-passes"),
        pytest.param("    return 0\n", False, id="wrong-body-fails"),
    ],
)
def test_evaluate_task(body: str, passes: bool) -> None:
    record = de.evaluate_task(TASK, _model, Body(body), de.EvalSettings(timeout_s=20))
    assert record.error == ""
    assert record.passed_generated is passes and record.passed_original is passes
    assert record.structure["exact"] and record.structure["described"] == 2
    assert record.raw_structure is not None and record.raw_structure["documented"] == 0
    assert "The offset." in record.docstring


def test_summary_and_table() -> None:
    records = [
        de.TaskRecord(
            "a",
            "f",
            structure={
                "params": 2,
                "documented": 2,
                "described": 1,
                "invented": 0,
                "returns_ok": True,
                "summary": True,
                "exact": True,
            },
            passed_generated=True,
            passed_original=True,
            origin={"summary": "model"},
        ),
        de.TaskRecord(
            "b",
            "g",
            structure={
                "params": 2,
                "documented": 2,
                "described": 2,
                "invented": 0,
                "returns_ok": True,
                "summary": True,
                "exact": True,
            },
            passed_generated=False,
            passed_original=True,
        ),
        de.TaskRecord("c", "h", error="ValueError: boom"),
    ]
    summary = de.summarize(records)
    assert summary["errors"] == 1 and summary["structure"]["params_described_by_model"] == 0.75
    assert summary["pass@1_generated_docstring"] == 0.5
    assert summary["ratio_generated_to_original"] == 0.5
    table = de.format_table(summary)
    assert "ratio generated / original" in table and "0.50" in table
