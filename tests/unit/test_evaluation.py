"""The evaluation harness with a stand-in sampler: doctest extraction, sandboxed checks,
ranking, the resumable record and the report files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lsp_server.evaluation import doctests, report
from lsp_server.evaluation.harness import (
    EvalConfig,
    doctest_choice,
    first_line,
    plan,
    run,
    summarize,
)
from lsp_server.evaluation.sampling import Sample, sample_seed
from lsp_server.evaluation.store import RunStore, RunStoreError
from lsp_server.evaluation.tasks import Task, TaskDataError, check_program, load_infilling

PROMPT = '''def add(a, b):
    """Add two numbers.
    >>> add(1, 2)
    3

    add(2, 2) ==> 4
    """
'''
TEST = "def check(candidate):\n    assert candidate(5, 7) == 12\n    assert candidate(-1, 1) == 0\n"
ADD = Task("T/add", PROMPT, "add", TEST)
# Passes the docstring's examples but not the hidden tests.
OVERFIT = "    return {(1, 2): 3, (2, 2): 4}.get((a, b), 0)\n"
RIGHT = "    return a + b\n"
WRONG = "    return a - b\n"


class FakeSampler:
    """Serves fixed completions with fixed log-probs; counts calls."""

    model_name = "fake"

    def __init__(self, greedy: str, samples: list[tuple[str, float]],
                 fail_after: int | None = None) -> None:
        self._greedy = greedy
        self._samples = samples
        self.calls = 0
        self.fail_after = fail_after

    def _tick(self) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt

    def greedy(self, text: str, cursor: int) -> Sample:
        self._tick()
        return Sample(self._greedy, cursor, cursor, mean_logprob=-0.1, token_count=5)

    def sample(self, text: str, cursor: int, *, seeds: list[int], temperature: float,
               top_p: float) -> list[Sample]:
        out = []
        for seed in seeds:
            self._tick()
            completion, logprob = self._samples[seed % len(self._samples)]
            out.append(Sample(completion, cursor, cursor, mean_logprob=logprob, token_count=5))
        return out


@pytest.mark.parametrize(
    ("docstring", "expected"),
    [
        pytest.param(">>> f(1)\n2\n", [("f(1)\n", "2\n")], id="doctest"),
        pytest.param(">>> f(1)\n", [], id="doctest-without-output"),
        pytest.param(">>> f(1) == 2\n", [("f(1) == 2\n", "True\n")], id="comparison-no-output"),
        pytest.param("f([1, 2]) ==> [2]", [("f([1, 2]) == [2]\n", "True\n")], id="arrow"),
        pytest.param("f('a') \u279e True", [("f('a') == True\n", "True\n")], id="unicode-arrow"),
        pytest.param("f(3) returns 'x'", [("f(3) == 'x'\n", "True\n")], id="returns"),
        pytest.param("f(3) should return 16.", [("f(3) == 16\n", "True\n")], id="should-return"),
        pytest.param("f(1, 2) = -1  # note", [("f(1, 2) == -1\n", "True\n")], id="equals-comment"),
        pytest.param("f(a) => False", [], id="non-literal-argument"),
        pytest.param("f(2) => true", [], id="non-literal-value"),
        pytest.param("f(2) -> 19 - 5 = 14", [], id="arithmetic-prose"),
        pytest.param("g(2) == 3", [], id="other-function"),
        pytest.param("maxf(2) == 3", [], id="name-suffix"),
        pytest.param("", [], id="empty"),
    ],
)
def test_examples(docstring: str, expected: list[tuple[str, str]]) -> None:
    found = doctests.examples(docstring, "f")
    assert [(e.source, e.want) for e in found] == expected


def test_function_docstring_of_prompt_without_body() -> None:
    assert doctests.function_docstring(PROMPT, "add").startswith("Add two numbers.")
    assert doctests.function_docstring(PROMPT, "missing") is None
    assert doctests.function_docstring("def broken(:\n", "broken") is None


@pytest.mark.parametrize(
    ("body", "passes", "counts"),
    [
        pytest.param(RIGHT, True, (2, 0), id="right"),
        pytest.param(WRONG, False, (2, 2), id="wrong"),
        pytest.param(OVERFIT, True, (2, 0), id="overfit-passes-examples"),
        pytest.param("    return str(a + b)\n", False, (2, 2), id="string-is-not-int"),
        pytest.param("    raise SystemExit(0)\n", False, (2, 2), id="exits-in-example"),
        pytest.param("    pass\nraise SystemExit(0)\n", False, None, id="exits-before-examples"),
    ],
)
def test_doctest_program_in_sandbox(body: str, passes: bool, counts: tuple[int, int] | None) -> None:
    from lsp_server.sandbox import run_python

    docstring = doctests.function_docstring(PROMPT, "add")
    examples = doctests.examples(docstring, "add")
    # The value check accepts '3' for 3 only when both sides are literals: str(3) -> '3'.
    program = doctests.doctest_program(PROMPT + body, doctests.as_docstring(examples), "add",
                                       "n0nce")
    result = run_python(program)
    counts_seen = doctests.parse_counts(result.stdout, "n0nce")
    assert counts_seen == counts
    assert (result.passed and counts_seen is not None) is passes


def test_doctest_output_compared_by_value() -> None:
    from lsp_server.sandbox import run_python

    source = 'def q():\n    """\n    >>> q()\n    "21"\n    """\n    return \'21\'\n'
    docstring = doctests.function_docstring(source, "q")
    program = doctests.doctest_program(source, doctests.as_docstring(
        doctests.examples(docstring, "q")), "q")
    assert run_python(program).passed


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        pytest.param(RIGHT, True, id="right"),
        pytest.param(WRONG, False, id="wrong"),
        pytest.param("    return a + b\nimport sys; sys.exit(0)\n", False, id="exit-0-early"),
        pytest.param("    return a + b\nimport os; os._exit(0)\n", False, id="os-exit-early"),
        pytest.param("    return a + b\nprint('n0nce')\nimport sys; sys.exit(0)\n", False,
                     id="guessed-wrong-nonce"),
    ],
)
def test_check_program_runs_hidden_tests(body: str, ok: bool) -> None:
    from lsp_server.evaluation.tasks import passed
    from lsp_server.sandbox import run_python

    result = run_python(check_program(PROMPT + body, ADD, "s3cret"))
    assert passed(result.returncode, result.stdout, "s3cret") is ok


def test_infilling_document_has_blank_line_at_cursor() -> None:
    task = Task("SingleLineInfilling/X/L1", "def f():\n", "f", "", suffix="    return 2\n",
                canonical_solution="    x = 1\n", blank_line=True)
    assert task.document_text == "def f():\n\n    return 2\n"
    assert task.document_text[task.cursor:].startswith("\n    return")
    filled = Sample("    x = 1", task.cursor, task.cursor).apply(task.document_text)
    assert filled == task.prompt + task.canonical_solution + task.suffix


def default_infilling_data() -> Path:
    """The ``--data`` that ``ghostpilot eval infilling`` uses when none is given."""
    from lsp_server.cli import build_parser

    data = build_parser().parse_args(["eval", "infilling"]).data
    assert isinstance(data, Path)
    return data


@pytest.mark.parametrize(
    ("benchmark", "count"),
    [pytest.param("single-line", 1033, id="single-line"),
     pytest.param("multi-line", 5815, id="multi-line")],
)
def test_infilling_data_ships_in_the_repo(benchmark: str, count: int) -> None:
    data = default_infilling_data()
    root = Path(__file__).resolve().parents[2]
    assert data == root / "benchmarks" / "data" / "humaneval-infilling"
    assert "MIT License" in (data / "LICENSE").read_text(encoding="utf-8")
    tasks = load_infilling(data, benchmark)
    assert len(tasks) == count
    assert len({task.task_id for task in tasks}) == count


def test_real_infilling_canonical_solutions_fill_the_blank_line() -> None:
    data = default_infilling_data()
    tasks = load_infilling(data, "single-line")
    for task in tasks[:50]:
        fill = task.canonical_solution.rstrip("\n")
        filled = Sample(fill, task.cursor, task.cursor).apply(task.document_text)
        assert filled == task.prompt + task.canonical_solution + task.suffix
    with pytest.raises(TaskDataError, match="unknown infilling"):
        load_infilling(data, "diagonal")
    with pytest.raises(TaskDataError, match="not found"):
        load_infilling(data / "nowhere", "single-line")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("    x = 1\n    y = 2", "    x = 1", id="two-lines"),
        pytest.param("\n\n    x = 1\n", "    x = 1", id="leading-blank"),
        pytest.param("", "", id="empty"),
    ],
)
def test_first_line(text: str, expected: str) -> None:
    assert first_line(Sample(text, 0, 0)).text == expected


def test_doctest_choice_prefers_passing_then_logprob() -> None:
    samples = [
        {"index": 0, "mean_logprob": -0.1, "doctest": {"passed": False, "attempted": 2, "failed": 1}},
        {"index": 1, "mean_logprob": -0.9, "doctest": {"passed": True, "attempted": 2, "failed": 0}},
        {"index": 2, "mean_logprob": -0.5, "doctest": {"passed": True, "attempted": 2, "failed": 0}},
        {"index": 3, "mean_logprob": -0.2, "doctest": {"passed": False, "attempted": 2, "failed": 2}},
    ]
    assert doctest_choice(samples)["index"] == 2
    failing = [samples[0], samples[3]]
    assert doctest_choice(failing)["index"] == 0  # fewest failures first
    no_examples = [{"index": 0, "mean_logprob": -2.0}, {"index": 1, "mean_logprob": -1.0}]
    assert doctest_choice(no_examples)["index"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"rank": "best"}, "--rank", id="bad-rank"),
        pytest.param({"n": 0}, "--n", id="no-samples"),
        pytest.param({"n": 5, "temperature": 0.0}, "greedy", id="greedy-with-n"),
        pytest.param({"rank": "doctest", "n": 5, "temperature": 0.0}, "temperature",
                     id="rank-needs-temperature"),
        pytest.param({"top_p": 0.0}, "top-p", id="top-p"),
        pytest.param({"ks": (0,)}, "--k", id="k-zero"),
    ],
)
def test_config_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvalConfig(benchmark="b", model="m", **kwargs)  # type: ignore[arg-type]


def test_doctest_ranking_run_end_to_end(tmp_path: Path) -> None:
    # Highest log-prob is wrong; overfit passes the examples but not the tests;
    # the right one passes both but has the lowest log-prob of the passing ones.
    sampler = FakeSampler(WRONG, [(WRONG, -0.05), (OVERFIT, -0.2), (RIGHT, -0.3), (WRONG, -0.4)])
    config = EvalConfig(benchmark="toy", model="fake", n=4, temperature=0.8, rank="doctest",
                        ks=(1, 2, 4), workers=2)
    seeds = [sample_seed(ADD.task_id, i) % 4 for i in range(4)]
    records = run([ADD], config, sampler, RunStore(tmp_path), progress=False)
    assert len(records) == 5 and sampler.calls == 5
    assert {r["isolation"] for r in records} <= {"bubblewrap", "rlimits"}
    summary = summarize(records, config)
    n_right = sum(1 for s in seeds if s == 2)
    assert summary["greedy_pass_at_1"] == 0.0
    assert summary["pass_at_k"]["1"] == pytest.approx(n_right / 4)
    ranked = summary["ranked_pass_at_1"]
    assert ranked["oracle (pass@4)"] == float(n_right > 0)
    # The doctest pick is right iff no overfit sample outranks the right one.
    drawn = [sampler._samples[s] for s in seeds]
    passing = [c for c, _ in sorted(drawn, key=lambda x: -x[1]) if c in (OVERFIT, RIGHT)]
    assert ranked["doctest, then log-prob"] == float(bool(passing) and passing[0] == RIGHT)
    best = max(drawn, key=lambda x: x[1])[0]
    assert ranked["mean log-prob"] == float(best == RIGHT)
    assert summary["tasks_with_examples"] == 1


def test_forced_ranking_outcome(tmp_path: Path) -> None:
    """With every sample drawn from a fixed list, ranking picks deterministically."""

    class Fixed(FakeSampler):
        def sample(self, text: str, cursor: int, *, seeds: list[int], temperature: float,
                   top_p: float) -> list[Sample]:
            table = [(WRONG, -0.05), (OVERFIT, -0.5), (RIGHT, -0.3)]
            self.calls += len(seeds)
            return [Sample(c, cursor, cursor, mean_logprob=lp, token_count=3) for c, lp in table]

    config = EvalConfig(benchmark="toy", model="fake", n=3, temperature=0.8, rank="doctest",
                        ks=(1, 3))
    records = run([ADD], config, Fixed(WRONG, []), RunStore(tmp_path), progress=False)
    summary = summarize(records, config)
    assert summary["ranked_pass_at_1"]["mean log-prob"] == 0.0
    assert summary["ranked_pass_at_1"]["doctest, then log-prob"] == 1.0
    assert summary["pass_at_k"] == pytest.approx({"1": 1 / 3, "3": 1.0})
    paths = report.write(tmp_path, records, summary, config, {"isolation": "bubblewrap"})
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = paths["summary"].read_text()
    assert "bubblewrap" in table
    assert re.search(r"pick by doctest, then log-prob\s*\| 100\.0%", table)
    saved = json.loads(paths["results"].read_text())
    assert [s["kind"] for s in saved["tasks"][0]["samples"]] == ["greedy", "sample", "sample", "sample"]


def test_interrupted_run_resumes_without_redoing(tmp_path: Path) -> None:
    tasks = [Task(f"T/{i}", PROMPT, "add", TEST) for i in range(3)]
    config = EvalConfig(benchmark="toy", model="fake", n=1, temperature=0.0)
    first = FakeSampler(RIGHT, [], fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run(tasks, config, first, RunStore(tmp_path), progress=False)
    done = list(RunStore(tmp_path).records())
    assert len(done) == 2
    with open(tmp_path / "samples.jsonl", "a") as fh:
        fh.write('{"task_id": "T/2", "kind": "gre')  # killed mid-write
    with pytest.raises(RunStoreError, match="--resume"):
        run(tasks, config, FakeSampler(RIGHT, []), RunStore(tmp_path), progress=False)
    changed = EvalConfig(benchmark="toy", model="other", n=1, temperature=0.0)
    with pytest.raises(RunStoreError, match="model"):
        run(tasks, changed, FakeSampler(RIGHT, []), RunStore(tmp_path), resume=True,
            progress=False)
    second = FakeSampler(RIGHT, [])
    records = run(tasks, config, second, RunStore(tmp_path), resume=True, progress=False)
    assert second.calls == 1
    assert sorted(r["task_id"] for r in records) == ["T/0", "T/1", "T/2"]
    assert summarize(records, config)["greedy_pass_at_1"] == 1.0
    assert len(list(RunStore(tmp_path).records())) == 3


def test_plan_counts_only_missing() -> None:
    config = EvalConfig(benchmark="toy", model="m", n=3, temperature=0.5, rank="logprob")
    finished = [{"task_id": "T/add", "kind": "sample", "index": 1},
                {"task_id": "T/add", "kind": "greedy", "index": 0}]
    (item,) = plan([ADD], config, finished)
    assert (item.greedy, item.sample_indices) == (False, [0, 2])


def test_doctest_ranking_calls_the_editors_tested_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--rank doctest`` ranks with lsp_server.tested.test_candidates, the function the
    editor's tested suggestions call: each sample's record carries its evidence."""
    from lsp_server.evaluation import harness
    from lsp_server.tested import pipeline

    calls: list[int] = []

    def spy(document: str, candidates: Any, checks: Any, **kwargs: Any) -> Any:
        calls.append(len(candidates))
        return pipeline.test_candidates(document, candidates, checks, **kwargs)

    monkeypatch.setattr(harness, "test_candidates", spy)
    sampler = FakeSampler(WRONG, [(OVERFIT, -0.2), (RIGHT, -0.3), (WRONG, -0.4)])
    config = EvalConfig(benchmark="toy", model="fake", n=3, temperature=0.8, rank="doctest",
                        ks=(1,), workers=1)
    records = run([ADD], config, sampler, RunStore(tmp_path), progress=False)
    assert calls == [3]
    samples = [r for r in records if r["kind"] == "sample"]
    assert all("evidence" in r["doctest"] for r in samples)
    for record in samples:
        evidence = record["doctest"]["evidence"]
        assert evidence["examplesTotal"] == record["doctest"]["attempted"] > 0
        assert record["doctest"]["passed"] == (evidence["examplesPassed"] == evidence["examplesTotal"])


def test_summary_gives_the_tested_pick_with_fewer_candidates() -> None:
    """With n=3 and k=2 in --k, the pick among each task's first 2 samples is reported too."""
    def record(index: int, passed: bool, examples: bool, logprob: float) -> dict[str, Any]:
        evidence = {"examples": [examples], "tests": {}, "status": "ran", "testsTotal": 0}
        return {"task_id": "t", "kind": "sample", "index": index, "passed": passed, "status": "passed",
                "mean_logprob": logprob,
                "doctest": {"passed": examples, "attempted": 1, "failed": int(not examples),
                            "evidence": evidence}}

    records = [record(0, False, False, -0.1), record(1, False, False, -0.2), record(2, True, True, -0.9)]
    config = EvalConfig(benchmark="toy", model="fake", n=3, temperature=0.8, rank="doctest", ks=(1, 2, 3))
    ranked = summarize(records, config)["ranked_pass_at_1"]
    assert ranked["doctest, then log-prob"] == 1.0  # all 3: the passing one is among them
    assert ranked["tested pick, first 2 samples"] == 0.0  # not among the first 2
