"""training/decontam.py: 10-gram decontamination against HumanEval and HumanEval-Infilling."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from training import build_data, decontam, extract

SOLUTION = ("def incr_list(l: list):\n    \"\"\"Return list with elements incremented by 1.\n"
            "    >>> incr_list([1, 2, 3])\n    [2, 3, 4]\n    \"\"\"\n"
            "    return [(e + 1) for e in l]\n")


def test_ngrams_are_whitespace_tokens_blind_to_layout() -> None:
    a = list(decontam.ngrams("a b c\n    d", 3))
    b = list(decontam.ngrams("a  b\tc d", 3))
    assert a == b == [("a", "b", "c"), ("b", "c", "d")]
    assert list(decontam.ngrams("a b", 3)) == []


@pytest.mark.parametrize("text, contaminated", [
    pytest.param(SOLUTION, True, id="verbatim"),
    pytest.param(SOLUTION.replace("\n    ", "\n        "), True, id="reindented"),
    pytest.param("x = 1\n" + " ".join(SOLUTION.split()[5:15]) + "\n", True, id="exactly-10-tokens"),
    pytest.param(" ".join(SOLUTION.split()[5:14]), False, id="only-9-tokens"),
    pytest.param(SOLUTION.replace("incremented", "INCREMENTED"), True, id="rest-still-matches"),
    pytest.param("def f(x):\n    return [e for e in x if e]\n", False, id="unrelated"),
])
def test_any_shared_10gram_flags_the_text(text: str, contaminated: bool) -> None:
    index = decontam.build_index([("HumanEval/42", SOLUTION)])
    found = index.matches(text)
    assert bool(found) is contaminated
    if contaminated:
        assert set(found) == {"HumanEval/42"}
        assert len(found["HumanEval/42"].split()) == 10


def test_case_matters() -> None:
    index = decontam.build_index([("t", "a b c d e f g h i j")])
    assert index.matches("a b c d e f g h i j")
    assert not index.matches("A b c d e f g h i j")


def _write_jsonl_gz(path: Path, rows: list[dict[str, str]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def test_infilling_tasks_are_indexed_as_prompt_solution_suffix(tmp_path: Path) -> None:
    prompt, middle, suffix = SOLUTION[:120], SOLUTION[120:140], SOLUTION[140:]
    _write_jsonl_gz(tmp_path / "HumanEval-SingleLineInfilling.jsonl.gz",
                    [{"task_id": "SingleLineInfilling/HumanEval/42/L0", "prompt": prompt,
                      "canonical_solution": middle, "suffix": suffix}])
    index = decontam.build_index(decontam.infilling_texts(tmp_path))
    assert index.matches(SOLUTION)
    # n-grams that cross the cut between prompt and solution are indexed too
    across = " ".join((prompt + middle).split()[-12:-2])
    assert index.matches(across)


def test_missing_infilling_data_is_an_error_not_a_silent_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(decontam.infilling_texts(tmp_path))


def test_the_real_benchmarks_flag_a_humaneval_solution() -> None:
    problems = list(decontam._jsonl_gz(decontam.humaneval_path()))
    index = decontam.build_index(decontam.humaneval_texts())
    task = problems[0]
    assert set(index.matches(task["prompt"] + task["canonical_solution"])) == {task["task_id"]}
    assert decontam.INFILLING_DIR == Path(__file__).resolve().parents[2] / "benchmarks" / \
        "data" / "humaneval-infilling"


def _candidate(body: str, name: str = "f") -> extract.Candidate:
    return extract.Candidate("t", "m.py", name, 1, "", f"def {name}(l):\n",
                             '    """Doc.\n\n    >>> 1\n    1\n    """\n', body, "Doc.")


def test_build_drops_contaminated_candidates_and_reports_the_match() -> None:
    index = decontam.build_index([("HumanEval/42", SOLUTION)])
    clean = _candidate("    return sorted(l)\n")
    dirty = _candidate("    # list with elements incremented by 1. >>> incr_list([1, 2, 3])\n"
                       "    return [(e + 1) for e in l]\n", "g")
    kept, dropped = build_data.decontaminate([clean, dirty], index)
    assert kept == [clean]
    assert [(c.qualname, set(found)) for c, found in dropped] == [("g", {"HumanEval/42"})]
