"""Tested suggestions: the function at the cursor, the sandboxed checks of one candidate
(real sandbox), formatting-only duplicates, the ranking, and a candidate that loops or
forks killed while the others still rank."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lsp_server.evaluation.doctests import Example
from lsp_server.tested import (
    Candidate,
    Checks,
    Evidence,
    candidate_title,
    check_candidate,
    checks_for,
    dedupe,
    function_at,
    ranked,
    test_candidates,
)
from lsp_server.tested.checks import doctest_text
from lsp_server.tested.target import module_name

FUNCTION = '''import math


def add(a, b):
    """Sum.

    >>> add(1, 2)
    3
    >>> add(-1, 1)
    0
    >>> add(2, 2)
    4
    """
'''

GOOD = "    return a + b\n"
WRONG = "    return a * b\n"  # passes add(2, 2) only
HALF = "    return 3 if a == 1 else a + b + 1\n"  # passes the first example only
LOOPS = "    while True:\n        pass\n"
FORKS = "    import os\n    while True:\n        os.fork()\n"


def candidates(*bodies: str, logprobs: tuple[float, ...] = ()) -> list[Candidate]:
    end = len(FUNCTION)
    return [Candidate(body, end, end, logprobs[i] if logprobs else -1.0 - i, i)
            for i, body in enumerate(bodies)]


def test_function_at_finds_the_innermost_function_and_its_examples() -> None:
    target = function_at(FUNCTION, len(FUNCTION))
    assert target is not None
    assert (target.name, target.qualname) == ("add", "add")
    assert [e.want.strip() for e in target.examples] == ["3", "0", "4"]
    assert FUNCTION[target.body_start:] == ""  # the body starts after the docstring
    assert function_at("x = 1\n", 3) is None


@pytest.mark.parametrize("module", ["argparse", "textwrap", "ftplib", "posixpath"])
def test_function_at_walks_one_statement_and_finds_what_a_whole_walk_finds(module: str) -> None:
    """Code actions ask at every cursor move; walking every definition of a 4,600-line
    module cost 30-50 ms there. Only the top-level statement at the cursor is walked
    now: the same function (or none) at every line start, line end and random offset,
    including a cursor on blank lines after a function and one right at a comment."""
    import importlib
    import inspect
    import random

    from lsp_server.parsing import syntax
    from lsp_server.reliance.functions import MODULE, functions

    text = inspect.getsource(importlib.import_module(module))
    tree = syntax.parse_text(text)
    everything = [f for f in functions(text, tree) if f.qualname != MODULE]

    def by_whole_walk(cursor: int) -> str | None:
        found = None
        for f in everything:
            if f.start <= cursor and (cursor <= f.end or not text[f.end:cursor].strip()):
                found = f.qualname
        return found

    rng = random.Random(module)
    line_ends = [i for i, char in enumerate(text) if char == "\n"]
    cursors = rng.sample(line_ends, 60) + [i + 1 for i in rng.sample(line_ends, 60)]
    cursors += [rng.randint(0, len(text)) for _ in range(60)]
    for cursor in cursors:
        target = function_at(text, cursor, tree)
        assert (target.qualname if target else None) == by_whole_walk(cursor), cursor


def test_doctest_text_keeps_continuation_lines() -> None:
    examples = [Example("for i in range(2):\n    print(i)\n", "0\n1\n"), Example("1 + 1\n", "2\n")]
    import doctest

    parsed = doctest.DocTestParser().get_examples(doctest_text(examples))
    assert [(e.source, e.want) for e in parsed] == [(e.source, e.want) for e in examples]


def test_module_name_from_a_workspace_path() -> None:
    assert module_name("pkg/mod.py") == "pkg.mod"
    assert module_name("src/pkg/__init__.py", ["src"]) == "pkg"
    assert module_name("top.py") == "top"


def test_dedupe_joins_candidates_that_differ_only_in_formatting() -> None:
    drawn = candidates("    return a+b\n", "    return (a + b)  # sum\n", WRONG, "   \n",
                       logprobs=(-2.0, -0.5, -1.0, -0.1))
    distinct = dedupe(FUNCTION, drawn)
    assert [c.text for c in distinct] == ["    return (a + b)  # sum\n", WRONG]
    assert distinct[0].index == 0 and distinct[0].copies == 2  # the first drawn position


def test_ranking_passes_all_then_most_then_logprob() -> None:
    def with_evidence(index: int, passed: tuple[bool, ...], logprob: float) -> Candidate:
        return Candidate(f"x{index}", 0, 0, logprob, index, Evidence(passed))

    order = ranked([
        with_evidence(0, (True, False, False), -0.1),
        with_evidence(1, (True, True, True), -3.0),
        with_evidence(2, (True, True, False), -2.0),
        with_evidence(3, (True, True, False), -1.0),
        with_evidence(4, (True, True, True), -2.0),
    ])  # fmt: skip
    assert [c.index for c in order] == [4, 1, 3, 2, 0]
    title = candidate_title(1, 5, order[0])
    assert title == "candidate 1/5 \u00b7 passes 3/3 examples"


def test_a_candidate_is_checked_against_each_example_in_the_sandbox() -> None:
    target = function_at(FUNCTION, len(FUNCTION))
    assert target is not None
    checks = checks_for(target)
    good = check_candidate(FUNCTION + GOOD, checks)
    assert (good.status, good.examples) == ("ran", (True, True, True)), good
    half = check_candidate(FUNCTION + HALF, checks)
    assert half.examples == (True, False, False), half
    assert half.label() == "passes 1/3 examples"
    broken = check_candidate(FUNCTION + "    return (\n", checks)
    assert broken.examples == (False, False, False)
    assert "did not import" in broken.message


def test_workspace_tests_run_against_the_candidate_not_the_file_on_disk(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "calc.py").write_text(FUNCTION + "    return 0\n")  # the disk: wrong
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(
        "from pkg.calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_add_negative():\n    assert add(-2, -3) == -5\n")
    target = function_at(FUNCTION, len(FUNCTION))
    assert target is not None
    checks = checks_for(target, root=tmp_path, relative="pkg/calc.py",
                        references=lambda names: ["tests/test_calc.py::test_add",
                                                  "tests/test_calc.py::test_add_negative"])
    assert checks.module == "pkg.calc"
    good = check_candidate(FUNCTION + GOOD, checks, timeout_s=30)
    assert good.tests == {"tests/test_calc.py::test_add": "passed",
                          "tests/test_calc.py::test_add_negative": "passed"}, good
    assert good.label() == "passes 3/3 examples, 2/2 tests"
    wrong = check_candidate(FUNCTION + "    return abs(a) + abs(b)\n", checks, timeout_s=30)
    assert wrong.tests_passed == 1 and wrong.tests_total == 2, wrong


@pytest.mark.parametrize("bad", [LOOPS, FORKS], ids=["loops", "forks"])
def test_a_candidate_that_loops_or_forks_is_killed_and_the_others_still_rank(bad: str) -> None:
    target = function_at(FUNCTION, len(FUNCTION))
    assert target is not None
    seen: list[tuple[int, int, int]] = []
    outcome = test_candidates(FUNCTION, candidates(bad, HALF, GOOD), checks_for(target),
                              timeout_s=3.0, progress=lambda *a: seen.append(a))
    assert [c.text for c in outcome.candidates] == [GOOD, HALF, bad]
    killed = outcome.candidates[-1].evidence
    assert killed is not None and killed.passed == 0, killed
    if bad is LOOPS:
        assert killed.status == "timeout" and "time limit" in killed.label(), killed
    else:  # forks run into the process limit (os.fork fails) or the time limit
        assert killed.status in ("ran", "timeout", "killed"), killed
    assert outcome.passing == 1
    assert seen[0] == (0, 3, 0) and seen[-1] == (3, 3, 1)
    assert outcome.summary().startswith("1 of 3 pass 3 docstring examples")


def test_nothing_passing_is_said_plainly() -> None:
    def check(source: str, checks: Checks) -> Evidence:
        return Evidence((source.endswith(HALF), False, False))

    target = function_at(FUNCTION, len(FUNCTION))
    assert target is not None
    outcome = test_candidates(FUNCTION, candidates(WRONG, HALF), checks_for(target), check=check)
    assert outcome.passing == 0
    assert outcome.best is not None and outcome.best.text == HALF
    assert outcome.summary() == ("0 of 2 pass 3 docstring examples (2 drawn); the best passes "
                                 "1/3 examples")


def test_cancelling_returns_what_finished() -> None:
    cancel = threading.Event()

    def check(source: str, checks: Checks) -> Evidence:
        cancel.set()
        return Evidence((True,), status="cancelled")

    target = function_at(FUNCTION, len(FUNCTION))
    assert target is not None
    outcome = test_candidates(FUNCTION, candidates(GOOD, HALF), checks_for(target), check=check,
                              cancel=cancel, workers=1)
    assert outcome.cancelled and outcome.candidates == ()


def test_body_range_draws_at_the_cursor_or_replaces_the_body() -> None:
    from lsp_server.features.tested import body_range

    empty = function_at(FUNCTION, len(FUNCTION))
    assert empty is not None
    # An empty body: drawn after the docstring, nothing replaced, however it was asked.
    assert body_range(FUNCTION, empty, len(FUNCTION), at_cursor=False) == (len(FUNCTION), len(FUNCTION))
    text = FUNCTION + "    total = a\n    return total + b\n"
    target = function_at(text, len(FUNCTION) + 4)
    assert target is not None
    # The command replaces the whole body after the docstring ...
    start, end = body_range(text, target, len(FUNCTION) + 4, at_cursor=False)
    assert (start, text[start:end]) == (len(FUNCTION), "    total = a\n    return total + b")
    # ... inline completion continues at the cursor in a partial body.
    cursor = len(FUNCTION) + len("    total = a\n")
    assert body_range(text, target, cursor, at_cursor=True) == (cursor, cursor)


def test_insert_titles_and_command_titles_carry_the_pass_counts() -> None:
    from lsp_server.features.tested import insert_title

    candidate = Candidate("x", 0, 0, -1.0, 0, Evidence((True, True, False), {"t::a": "passed", "t::b": "failed"}))
    assert insert_title(1, candidate) == "Insert candidate 1: passes 2/3 examples, 1/2 tests"
    assert candidate_title(2, 5, candidate) == "candidate 2/5 \u00b7 passes 2/3 examples, 1/2 tests"
    killed = Candidate("x", 0, 0, -1.0, 1, Evidence((False,), {}, "timeout", "killed: ran past its time limit"))
    assert insert_title(3, killed) == "Insert candidate 3: passes 0/1 examples (killed: ran past its time limit)"


def test_a_tester_checks_candidates_as_they_come() -> None:
    """Candidates added one by one (as a batch's sequences end) are tested at once; a
    copy differing only in formatting is not run again; the total is k while drawing."""
    from lsp_server.tested.pipeline import Tester

    target = function_at(FUNCTION, len(FUNCTION))
    assert target is not None
    runs: list[str] = []
    seen: list[tuple[int, int, int]] = []

    def check(source: str, checks: Checks) -> Evidence:
        runs.append(source)
        return Evidence((source.endswith(GOOD), True, True))

    tester = Tester(FUNCTION, checks_for(target), check=check, workers=1, expected=4,
                    progress=lambda *a: seen.append(a))
    first, copy, other = candidates(GOOD, "    return (a + b)\n", HALF, logprobs=(-1.0, -0.5, -2.0))
    tester.add(first)
    deadline = time.monotonic() + 30
    while not seen:  # tested while the others are still being drawn
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert seen[0] == (1, 4, 1)  # while drawing, the total is what will come
    tester.add(copy)
    tester.add(other)
    tester.add(Candidate("", first.start, first.end, -1.0, 3))
    outcome = tester.outcome()
    assert len(runs) == 2  # the copy was not run
    assert outcome.drawn == 4 and [c.text for c in outcome.candidates] == [GOOD, HALF]
    assert outcome.candidates[0].copies == 2 and outcome.candidates[0].mean_logprob == -0.5
    assert seen[-1] == (2, 2, 1)  # once closed, the distinct count
