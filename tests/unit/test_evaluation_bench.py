"""Pure parts of the benchmarks: the typing session, percentiles, UTF-16 positions and
the latency summary."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from lsp_server.evaluation import typing_replay
from lsp_server.evaluation.latency import (
    Replay,
    RequestRecord,
    latency_stats,
    peer_summary,
    percentile,
    summarize,
)
from lsp_server.evaluation.lsp_client import utf16_position
from lsp_server.evaluation.throughput import fractions

SOURCE = '''import os


def first(items):
    """Return the first item."""
    for item in items:
        return item
    return None


def one_liner(x): return x


class Box:
    def size(self, scale=1):
        total = len(self.items) * scale
        if total > 10:
            total = 10
        return total

    def nested(self):
        def inner():
            return 1
        return inner()
'''


def test_function_bodies_skip_docstrings_one_liners_and_nesting() -> None:
    bodies = typing_replay.function_bodies(SOURCE)
    # one_liner: on the def line; nested: holds a def; inner: one line only.
    assert [(b.name, b.lines) for b in bodies] == [("first", 3), ("size", 4)]
    first = bodies[0]
    assert SOURCE[first.start:first.end] == "for item in items:\n        return item\n    return None"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("x = 1", [("x", False), (" ", True), ("=", False), (" ", False),
                               ("1", False)], id="assignment"),
        pytest.param("f(a)", [("f", False), ("(", True), ("a", False), (")", True)], id="call"),
        pytest.param("a\n    b", [("a", False), ("\n    ", True), ("b", False)],
                     id="newline-with-indent"),
        pytest.param("a\n\n    b", [("a", False), ("\n", False), ("\n    ", True), ("b", False)],
                     id="blank-line"),
        pytest.param("s = 'x y'", [("s", False), (" ", True), ("=", False), (" ", False),
                                   ("'", False), ("x", False), (" ", True), ("y", False),
                                   ("'", False)], id="quote-not-requested"),
    ],
)
def test_keystrokes(body: str, expected: list[tuple[str, bool]]) -> None:
    assert typing_replay.keystrokes(body) == expected
    assert "".join(piece for piece, _ in typing_replay.keystrokes(body)) == body


@pytest.mark.parametrize("limit", [pytest.param(None, id="whole"), pytest.param(7, id="cut")])
def test_session_restores_the_file(limit: int | None) -> None:
    edits = typing_replay.session(SOURCE, functions=5, max_keystrokes=limit)
    text = SOURCE
    for edit in edits:
        text = typing_replay.apply(text, edit)
    assert text == SOURCE
    typed = sum(e.kind == "type" for e in edits)
    assert typed == (limit if limit else sum(len(typing_replay.keystrokes(
        SOURCE[b.start:b.end])) for b in typing_replay.function_bodies(SOURCE)))
    assert edits[0].kind == "delete" and edits[0].request


def test_session_on_a_real_stdlib_module() -> None:
    path = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
    text = path.read_text()
    edits = typing_replay.session(text, functions=3)
    assert len({e.function for e in edits}) == 3
    for edit in edits:
        text = typing_replay.apply(text, edit)
    assert text == path.read_text()


def test_session_without_functions_is_an_error() -> None:
    with pytest.raises(ValueError, match="no function bodies"):
        typing_replay.session("x = 1\n")


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        pytest.param("abc", 2, (0, 2), id="ascii"),
        pytest.param("a\nbc", 3, (1, 1), id="second-line"),
        pytest.param("é😀x", 3, (0, 4), id="astral-counts-two"),
        pytest.param("x\n😀\n", 3, (1, 2), id="after-astral-on-second-line"),
    ],
)
def test_utf16_position(text: str, offset: int, expected: tuple[int, int]) -> None:
    assert utf16_position(text, offset) == expected


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([5.0], 95, 5.0, id="single"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 50, 2.5, id="median-even"),
        pytest.param(list(range(1, 101)), 95, 95.05, id="p95"),
        pytest.param([3.0, 1.0, 2.0], 100, 3.0, id="max-unsorted"),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    assert latency_stats([]) == {"count": 0}


def test_summary_splits_modes_and_counts_tokens() -> None:
    records = [
        RequestRecord(0, "f", 1, 0, 100.0, mode="line", prompt_tokens=100, reused_tokens=95,
                      evaluated_tokens=5, generated_tokens=10, decode_ms=200.0),
        RequestRecord(1, "f", 2, 0, 300.0, mode="block", prompt_tokens=200, reused_tokens=100,
                      evaluated_tokens=100, generated_tokens=40, decode_ms=1000.0),
        RequestRecord(2, "f", 3, 0, 2.0, mode="line", cached=True, prompt_tokens=100,
                      evaluated_tokens=5),
        RequestRecord(3, "f", 4, 0, 50.0),
    ]
    summary = summarize(Replay(records, keystrokes=4, edits=5, rss_mb=400.0, peak_rss_mb=420.0))
    assert summary["latency"]["single_line"]["count"] == 2
    assert summary["latency"]["multi_line"] == latency_stats([300.0])
    assert summary["latency"]["no_suggestion"]["count"] == 1
    assert summary["cached_suggestions"] == 1 and summary["suggestions"] == 3
    tokens = summary["prompt_tokens"]
    assert (tokens["prompt_total"], tokens["evaluated_total"], tokens["reused_total"]) == (300, 105, 195)
    assert tokens["evaluated_share_mean"] == pytest.approx((0.05 + 0.5) / 2)
    assert summary["decode_tokens_per_s"]["p50"] == pytest.approx(45.0)
    assert summary["server_rss_mb"] == {"end": 400.0, "peak": 420.0}


def test_peer_summary_ratios() -> None:
    records = [RequestRecord(i, "f", i, 0, 100.0 * (i + 1), mode="line",
                             peer={"latency_ms": 50.0 * (i + 1), "prompt_n": 3, "tokens": [1, 2, 3]})
               for i in range(3)]
    summary = peer_summary(records)
    assert summary["paired_requests"] == 3
    assert summary["single_line"]["ratio_p50"] == pytest.approx(2.0)
    assert summary["multi_line"]["ours"] == {"count": 0}
    assert summary["peer_prompt_tokens_evaluated"] == 9


def test_rounds_table_lists_each_round_then_the_median() -> None:
    """``bench latency --rounds N``: a file's figures per round and their median, from the
    real summaries; a round without llama-server leaves its ratio out of the median."""
    from lsp_server.cli.bench import rounds_table

    def round_report(ours_ms: float, theirs_ms: float | None) -> dict[str, object]:
        peer = None if theirs_ms is None else {"latency_ms": theirs_ms, "prompt_n": 2, "tokens": [1, 2]}
        records = [RequestRecord(i, "f", i, 0, ours_ms, mode="line", generated_tokens=4,
                                 decode_ms=ours_ms / 2, prompt_eval_ms=5.0, peer=peer)
                   for i in range(3)]
        report: dict[str, object] = {"input": "mod.py", "ours": summarize(Replay(records, 3, 3))}
        if theirs_ms is not None:
            report["llama_server"] = peer_summary(records)
        return report

    table = rounds_table([round_report(40.0, 40.0), round_report(44.0, 40.0),
                          round_report(50.0, None)])
    rows = {line.split(" | ")[1]: line for line in table.splitlines()[2:]}
    assert rows["ours single-line p50 ms"].endswith("| 40.0, 44.0, 50.0 | 44.0 |")
    assert rows["vs llama-server, single-line p50"].endswith("| 1.00, 1.10, – | 1.05 |")
    assert "ours return p95 ms" not in rows  # a typing replay has no phases


def test_throughput_fractions() -> None:
    ours = {"pp": {"tokens_per_s": 400.0}, "tg": {"tokens_per_s": 40.0}}
    bench = {"pp": {"tokens_per_s": 500.0}, "tg": {"tokens_per_s": None}}
    assert fractions(ours, bench) == {"pp": 0.8, "tg": None}


def test_profile_summary_counts_each_frame_once_per_stack() -> None:
    from lsp_server.evaluation.profiling import summarize, table

    raw = (
        "run (a.py:1);work (a.py:5);decode (b.py:9) 6\n"
        "run (a.py:1);work (a.py:7);work (a.py:8) 3\n"  # recursion: counted once
        "run (a.py:2) 1\n"
        "garbage line\n"
    )
    total, shares = summarize(raw)
    assert total == 10
    by_frame = {s.frame: s for s in shares}
    assert by_frame["run (a.py)"].inclusive == 1.0
    assert by_frame["work (a.py)"].inclusive == 0.9
    assert by_frame["work (a.py)"].own == 0.3
    assert by_frame["decode (b.py)"].own == 0.6
    assert [s.frame for s in shares][:2] == ["run (a.py)", "work (a.py)"]
    assert "| `decode (b.py)` | 60.0% | 60.0% |" in table(raw)
    assert summarize("") == (0, [])


def test_competing_load_runs_busy_processes_and_stops_them() -> None:
    import os
    import time

    from lsp_server.evaluation.latency import competing_load

    def busy_children() -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmd:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                    command = cmd.read()
            except (OSError, ValueError, IndexError):
                continue
            if parent == os.getpid() and b"while True: pass" in command:
                found.add(int(entry))
        return found

    with competing_load(2):
        time.sleep(0.1)
        assert len(busy_children()) == 2
    assert busy_children() == set()
    with competing_load(0):
        assert busy_children() == set()


def test_jump_session_round_robin_two_asks_a_visit() -> None:
    """Three functions, three visits: bodies deleted at the first visit and typed back two
    words a visit, each word ending with a request; the phases say first/return/warm."""
    text = SOURCE + "\n\ndef last(values):\n    total = 0\n    for v in values:\n        total += v\n    return total\n"
    edits = typing_replay.jump_session(text, functions=3, visits=3, min_lines=2)
    asked = [e for e in edits if e.request]
    assert [e.phase for e in asked] == ["first", "warm"] * 3 + ["return", "warm"] * 6
    assert [e.function for e in asked][:6] == ["first", "first", "size", "size", "last", "last"]
    assert sum(e.kind == "delete" for e in edits) == 3
    # The cursor arrives once a visit: at the deletion on a first visit, at the first
    # keystroke of a return; every visit's first request follows its arrival.
    arrivals = [i for i, e in enumerate(edits) if e.arrive]
    assert len(arrivals) == 9
    assert [edits[i].kind for i in arrivals] == ["delete"] * 3 + ["type"] * 6
    firsts = [i for i, e in enumerate(edits) if e.phase in ("first", "return")]
    assert all(a <= f and not any(edits[j].request for j in range(a, f))
               for a, f in zip(arrivals, firsts))
    current = text
    for edit in edits:
        current = typing_replay.apply(current, edit)
    # Each body is retyped from its start: what is there now is a prefix of the original.
    for name, start_line in (("first", "    for item"), ("last", "    total = 0")):
        body_start = current.index(f"def {name}(")
        typed = current[current.index(start_line[:8], body_start):]
        original = text[text.index(start_line, text.index(f"def {name}(")):]
        assert original.startswith(typed[: typed.index("\n\n")] if "\n\n" in typed else typed)


def test_jump_session_typed_to_the_end_gives_the_file_back() -> None:
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    edits = typing_replay.jump_session(text, functions=4, visits=10_000)
    current = text
    for edit in edits:
        current = typing_replay.apply(current, edit)
    # Only what is left after a function's last whole pair of words is missing.
    bodies = typing_replay._spread(typing_replay.function_bodies(text, min_lines=3), 4)
    missing = len(text) - len(current)
    assert 0 <= missing < sum(len(text[b.start:b.end]) for b in bodies) // 4


def test_phase_summary_and_everything_but_decode() -> None:
    records = [
        RequestRecord(0, "f", 1, 0, 900.0, mode="line", phase="first", prompt_tokens=800,
                      evaluated_tokens=700, reused_tokens=100, generated_tokens=5, decode_ms=100.0,
                      peer={"latency_ms": 600.0, "predicted_ms": 90.0, "prompt_n": 650}),
        RequestRecord(1, "f", 2, 0, 150.0, mode="line", phase="warm", prompt_tokens=805,
                      evaluated_tokens=3, reused_tokens=802, generated_tokens=5, decode_ms=100.0,
                      peer={"latency_ms": 140.0, "predicted_ms": 90.0, "prompt_n": 3}),
        RequestRecord(2, "g", 3, 0, 200.0, phase="return", prompt_tokens=700,
                      evaluated_tokens=10, reused_tokens=690, generated_tokens=8, decode_ms=120.0,
                      peer={"latency_ms": 500.0, "predicted_ms": 110.0, "prompt_n": 400}),
        RequestRecord(3, "g", 4, 0, 2.0, mode="line", cached=True, phase="warm"),
    ]
    summary = summarize(Replay(records, keystrokes=4, edits=4))
    phases = summary["phases"]
    assert phases["first"]["evaluated_tokens"]["total"] == 700
    assert phases["return"]["latency"]["count"] == 1 and phases["return"]["model_ran"] == 1
    assert phases["warm"]["latency"]["count"] == 2 and phases["warm"]["model_ran"] == 1
    assert phases["warm"]["not_decode_ms"]["p50_ms"] == 50.0
    assert summary["nothing_generated"]["count"] == 0
    peer = peer_summary(records)
    assert peer["return"]["ours_evaluated"] == 10 and peer["return"]["peer_evaluated"] == 400
    assert peer["not_decode"]["ours"]["p50_ms"] == 80.0  # 800, 50, 80
    assert peer["not_decode"]["llama_server"]["p50_ms"] == 390.0  # 510, 50, 390


@pytest.mark.parametrize("new", [
    "import os\ndef f():\n    return 12\n",  # typing at the end of a line
    "import os\ndef f():\n    ret\n",  # deleting
    "import os\n\u00e9\U0001F600\n",  # replacing across lines, non-BMP text
    "",
])  # fmt: skip
def test_the_peer_prompts_document_reaches_each_text_by_one_edit(new: str) -> None:
    """record_prompts keeps one document, as the server does, and edits it into each
    snapshot's text (one range: what lies between the common prefix and suffix)."""
    from lsp_server.evaluation.latency import _edit_to
    from lsp_server.parsing.document import Document

    document = Document(uri="file:///a.py", text="import os\ndef f():\n    return 1\n")
    assert document.tree is not None
    _edit_to(document, new)
    assert document.text == new and document.revision == 1
    assert document.request_tree() is not None
