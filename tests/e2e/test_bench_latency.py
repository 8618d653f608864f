"""``ghostpilot bench`` end to end with the real server and embedded model: a
20-keystroke typing replay over LSP stdio, and a short throughput run. These check
the report's fields and counts, not speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lsp_server.evaluation import typing_replay

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TEXTWRAP = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"


def ghostpilot(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lsp_server", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_twenty_keystroke_replay_reports_every_field(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    profile = tmp_path / "server.pyspy.txt"
    done = ghostpilot("bench", "latency", "--file", str(TEXTWRAP), "--keystrokes", "20",
                      "--peer", "off", "--out", str(out), "--profile", str(profile),
                      "--busy", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    expected = typing_replay.session(TEXTWRAP.read_text(), functions=6, max_keystrokes=20)
    expected_requests = sum(e.request and e.kind != "restore" for e in expected)
    ours = report["ours"]
    assert ours["keystrokes"] == 20
    assert ours["requests"] == expected_requests == len(report["requests"])
    latency = ours["latency"]
    assert latency["all"]["count"] == expected_requests
    assert (latency["single_line"].get("count", 0) + latency["multi_line"].get("count", 0)
            + latency["no_suggestion"].get("count", 0)) == expected_requests
    for name in ("single_line", "multi_line", "no_suggestion", "all"):
        stats = latency[name]
        if stats["count"]:
            assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["max_ms"]
    assert ours["suggestions"] >= 1, "the embedded model suggested nothing in 20 keystrokes"
    for record in report["requests"]:
        assert record["latency_ms"] > 0
        assert record["mode"] in (None, "line", "block")
        if record["mode"] and not record["cached"]:
            assert record["prompt_tokens"] == record["reused_tokens"] + record["evaluated_tokens"]
            assert record["generated_tokens"] >= 1
    tokens = ours["prompt_tokens"]
    assert tokens["prompt_total"] == tokens["evaluated_total"] + tokens["reused_total"]
    assert ours["server_rss_mb"]["end"] > 50
    assert ours["stdout_only_jsonrpc"] is True
    assert "llama_server" not in report
    assert report["busy_processes"] == 1
    assert "| ours all |" in done.stdout and "debounce:" in done.stdout
    # py-spy sampled the server itself: the completion engine is on its stacks.
    assert "_job (lsp_server/engine.py" in profile.read_text()
    assert "server profile during the replay" in done.stdout and "py-spy samples:" in done.stdout


def test_throughput_reports_our_rates(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    done = ghostpilot("bench", "throughput", "--peer", "off", "--prompt-tokens", "64",
                      "--gen-tokens", "16", "--repetitions", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ours"]["pp"]["tokens_per_s"] > 0
    assert report["ours"]["tg"]["tokens_per_s"] > 0
    assert 32 <= report["ours"]["pp"]["tokens"] <= 65  # with BOS
    assert "prompt processing" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["latency", "--file", "/no/such.py"], "No such file", id="missing-file"),
        pytest.param(["latency", "--peer", "on", "--llama-bin", "/nowhere", "--file", str(TEXTWRAP)],
                     "llama-server", id="peer-required"),
    ],
)
def test_bad_input_is_one_clear_error(args: list[str], message: str, tmp_path: Path) -> None:
    env_home = {"GHOSTPILOT_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "lsp_server", "bench", *args], cwd=ROOT,
                          text=True, capture_output=True, timeout=120,
                          env={**os.environ, **env_home, "PATH": "/usr/bin:/bin"})
    if "peer-required" in message and done.returncode == 0:
        pytest.skip("llama-server is on PATH")
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_jump_pattern_replay_returns_cost_only_the_new_tokens(tmp_path: Path) -> None:
    """The jump pattern in its small size through ``ghostpilot serve``: three functions,
    two visits each. Coming back to a function restores its saved KV state
    (``kvCache`` in ghostpilot/stats), so a return evaluates far fewer prompt tokens
    than the first visit did."""
    out = tmp_path / "jump.json"
    done = ghostpilot("bench", "latency", "--pattern", "jump", "--file", str(TEXTWRAP),
                      "--functions", "3", "--visits", "2", "--peer", "off", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["pattern"] == "jump"
    edits = typing_replay.jump_session(TEXTWRAP.read_text(), functions=3, visits=2)
    phases = [e.phase for e in edits if e.request]
    assert phases.count("first") == phases.count("return") == 3 and phases.count("warm") == 6
    ours = report["ours"]
    assert [r["phase"] for r in report["requests"]] == phases
    assert {name: entry["latency"]["count"] for name, entry in ours["phases"].items()} == {
        "first": 3, "return": 3, "warm": 6}
    for record in report["requests"]:
        # Every request is accounted for by the server, suggested or not.
        assert record["outcome"], record
        if not record["cached"] and record["generated_tokens"]:
            assert record["prompt_tokens"] == record["reused_tokens"] + record["evaluated_tokens"]
    kv = ours["kv_cache"]
    assert kv["limitMb"] == 256 and kv["saves"] >= 2 and kv["restores"] >= 1
    assert 0 < kv["usedMb"] <= kv["limitMb"]
    first = ours["phases"]["first"]["evaluated_tokens"]
    back = ours["phases"]["return"]["evaluated_tokens"]
    if first["count"] and back["count"]:
        assert back["mean"] < first["mean"] / 2, (first, back)
    assert "| ours return |" in done.stdout and "saved KV states:" in done.stdout


def test_the_peer_is_given_exactly_the_servers_prompts(tmp_path: Path) -> None:
    """With ``--peer on`` the server reports each prompt's token ids (recordPrompts, in
    its stats after the timed answer) and llama-server gets those same tokens: no prompt
    of another length, every request the model ran paired, and the peer's prompt count
    for each is the server's."""
    from lsp_server.evaluation.llama_peer import find_tool

    if find_tool("llama-server", None) is None:
        message = "llama-server is not built: run scripts/build-llama-server.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path / "peer.json"
    done = ghostpilot("bench", "latency", "--file", str(TEXTWRAP), "--keystrokes", "30",
                      "--peer", "on", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    peer = report["llama_server"]
    ran = [r for r in report["requests"] if not r["cached"] and r["generated_tokens"] > 0]
    assert ran and peer["paired_requests"] == len(ran)
    assert peer["prompt_length_differs"] == 0
    assert "building the same prompts through the engine" not in done.stderr
    assert "prompts of another length than the server's: 0" in done.stdout
