"""``ghostpilot eval`` end to end with the real embedded model: 3 HumanEval tasks,
2 samples each plus greedy, doctest ranking, then a resume that redoes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def ghostpilot(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lsp_server", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_humaneval_three_tasks_two_samples(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["eval", "humaneval", "--limit", "3", "--n", "2", "--temperature", "0.8",
            "--k", "1,2", "--rank", "doctest", "--max-tokens", "128", "--out", str(out),
            "--no-progress"]
    done = ghostpilot(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    tasks = results["tasks"]
    assert [t["task_id"] for t in tasks] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    for task in tasks:
        kinds = sorted((s["kind"], s["index"]) for s in task["samples"])
        assert kinds == [("greedy", 0), ("sample", 0), ("sample", 1)]
        for sample in task["samples"]:
            assert sample["status"] in {"passed", "failed", "timeout", "killed", "error"}
            assert sample["passed"] == (sample["status"] == "passed")
            assert sample["isolation"] == results["config"]["isolation"]
            assert isinstance(sample["text"], str)
            # All three prompts carry >>> examples, so every sample was doctest-checked.
            assert sample["kind"] == "greedy" or "doctest" in sample
    summary = results["summary"]
    assert summary["tasks"] == 3 and summary["samples"] == 9
    assert set(summary["pass_at_k"]) == {"1", "2"}
    assert set(summary["ranked_pass_at_1"]) >= {"mean log-prob", "doctest, then log-prob"}
    assert 0.0 <= summary["greedy_pass_at_1"] <= 1.0
    # The summary table on stdout names the isolation that was used.
    assert "| sandbox isolation" in done.stdout
    assert results["config"]["isolation"] in done.stdout
    assert (out / "passk.png").read_bytes()[:4] == b"\x89PNG"
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 9

    # Same run again without --resume: refused, nothing lost.
    refused = ghostpilot(*args)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert (out / "samples.jsonl").read_text().splitlines() == lines
    # With --resume: nothing left to do, the same figures.
    resumed = ghostpilot(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "samples.jsonl").read_text().splitlines() == lines
    assert json.loads((out / "results.json").read_text())["summary"] == summary


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["humaneval", "--k", "one"], "--k expects", id="bad-k"),
        pytest.param(["humaneval", "--n", "4", "--temperature", "0"], "greedy", id="greedy-n"),
        pytest.param(["infilling", "--data", "/nonexistent"], "not found", id="missing-data"),
        pytest.param(["humaneval", "--limit", "0"], "--limit", id="bad-limit"),
    ],
)
def test_bad_arguments_give_one_clear_error(args: list[str], message: str) -> None:
    done = ghostpilot("eval", *args, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
