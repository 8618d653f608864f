"""``ghostpilot bench team`` in its small size: N = 1, 2 editors, a few keystrokes each,
against a real llama-server (``--parallel N``) with the embedded model. The figures are
not judged here (benchmarks/RESULTS.md has them); the test checks that every number comes
from a real run and adds up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.evaluation.llama_peer import find_tool
from lsp_server.evaluation.team import editor_plans

pytestmark = [pytest.mark.e2e]


def test_editor_plans_type_different_functions_of_real_files() -> None:
    plans = editor_plans(8, keystrokes=10)
    assert len({plan.name for plan in plans}) == 8
    for plan in plans:
        typed = [e for e in plan.edits if e.kind == "type"]
        assert plan.edits[0].kind == "delete" and len(typed) == 10 and any(e.request for e in typed)


def test_bench_team_small(tmp_path: Path) -> None:
    if find_tool("llama-server", None) is None:
        message = "llama-server is not built: run scripts/build-llama-server.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path / "team.json"
    done = subprocess.run([sys.executable, "-m", "lsp_server", "bench", "team", "--editors", "1,2",
                           "--keystrokes", "12", "--keystroke-ms", "120", "--threads", "2",
                           "--local", "off", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["sizes"]) == {"1", "2"}
    for size, entry in report["sizes"].items():
        assert f"--parallel {size}" in " ".join(entry["argv"])
        for client in ("ghostpilot", "naive"):
            s = entry[client]
            assert s["editors"] == int(size) and s["requests"] > 0
            assert s["generated_tokens"] > 0, (client, s)  # the engine's own counter moved
            assert 0 <= s["wasted_tokens"] <= s["generated_tokens"]
            assert s["suggestions"] + s["stale"] + s["empty"] <= s["requests"]
            if s["suggestions"]:
                assert 0 < s["p50_ms"] <= s["p95_ms"]
            assert s["prompt_cache_hit"] is not None and 0 <= s["prompt_cache_hit"] <= 1
        outcomes = entry["ghostpilot"]["outcomes"]
        assert sum(outcomes.values()) > 0 and outcomes["failed"] == 0
    assert "| 2 | naive |" in done.stdout and "| 1 | ghostpilot |" in done.stdout
