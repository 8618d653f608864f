"""``ghostpilot bench latency``: keystroke-to-suggestion latency through the real LSP
stdio interface, beside llama.cpp's ``llama-server`` given the same prompts.

1. Start ``ghostpilot serve`` as a subprocess, open a real Python file, and replay a
   typing session (:mod:`typing_replay`): ``didChange`` per keystroke, an inline
   completion request at each word boundary. Latency is from the moment the keystroke's
   ``didChange`` leaves the client to the moment the completion arrives. After each
   answer, ``ghostpilot/stats`` gives the mode and the prompt tokens evaluated/reused.
2. Rebuild, in-process and through the same :class:`CompletionEngine`, the exact token
   prompt of every request our server generated for (a recording backend captures it).
3. Send those prompts, in the same order, to ``llama-server`` with ``cache_prompt`` on,
   asking for as many tokens as our server generated, and time each HTTP round trip.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsp_server.evaluation import typing_replay
from lsp_server.evaluation.llama_peer import process_rss_mb
from lsp_server.evaluation.lsp_client import LspClient, utf16_position
from lsp_server.evaluation.profiling import Profiler

DEBOUNCE = ("a request at each word boundary (after a character that ends a word, a closing "
            "bracket, or a new line) and on each emptied body; none mid-word; the next "
            "keystroke waits for the answer")


@dataclass
class RequestRecord:
    index: int
    function: str
    keystroke: int
    offset: int
    latency_ms: float
    mode: str | None = None  # "line" | "block"; None: no suggestion
    cached: bool = False
    text: str = ""
    prompt_tokens: int = 0
    reused_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    decode_ms: float = 0.0
    server_latency_ms: float = 0.0
    # Jump pattern: "first" | "return" | "warm" ("" in the typing pattern).
    phase: str = ""
    # The server's own account of the request (``lastRequest`` of ghostpilot/stats),
    # given for requests that suggested nothing too.
    outcome: str = ""
    queued_ms: float = 0.0
    plan_ms: float = 0.0
    prompt_ms: float = 0.0
    prompt_eval_ms: float = 0.0
    finish_ms: float = 0.0
    peer: dict[str, Any] | None = None
    # The token ids of the prompt the server evaluated (``recordPrompts``): the peer's.
    prompt_ids: list[int] | None = None

    @property
    def model_ran(self) -> bool:
        return not self.cached and self.generated_tokens > 0

    @property
    def not_decode_ms(self) -> float:
        """Everything but decoding: transport, queueing, prompt building, prompt
        evaluation, post-processing."""
        return self.latency_ms - self.decode_ms


@dataclass
class Replay:
    records: list[RequestRecord]
    keystrokes: int
    edits: int
    snapshots: list[tuple[str, int]] = field(default_factory=list)
    rss_mb: float | None = None
    peak_rss_mb: float | None = None
    load_s: float = 0.0
    server_stdout_clean: bool = True
    kv_cache: dict[str, Any] | None = None
    threads: dict[str, Any] | None = None  # the thread governor at the end (backends/threads.py)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_stats(values: Sequence[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50_ms": round(percentile(values, 50), 1),
            "p95_ms": round(percentile(values, 95), 1), "max_ms": round(max(values), 1),
            "mean_ms": round(sum(values) / len(values), 1)}


@contextlib.contextmanager
def competing_load(processes: int) -> Iterator[None]:
    """``processes`` busy loops running meanwhile: a laptop where something else (a
    build, a browser tab, a test run) wants the cores too."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(processes)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


def server_argv() -> list[str]:
    return [sys.executable, "-m", "lsp_server", "serve"]


def replay_ours(path: Path, edits: Sequence[typing_replay.Edit], *, settings: dict[str, Any],
                keystroke_s: float = 0.0, log: Callable[[str], None] = print,
                stderr_path: str | None = None, progress: bool = True,
                profile: Path | None = None, dwell_s: float = 0.0) -> Replay:
    """Replay ``edits`` on ``path`` through a fresh ``ghostpilot serve``.

    With ``profile``, py-spy samples the server during the timed replay and writes its
    raw output there.
    """
    text = path.read_text(encoding="utf-8")
    workdir = tempfile.mkdtemp(prefix="ghostpilot-bench-")
    try:
        copy = Path(workdir) / path.name
        copy.write_text(text, encoding="utf-8")
        uri = copy.as_uri()
        started = time.perf_counter()
        # The server reports each prompt's token ids (after the timed answer, in its
        # stats), so that llama-server is given exactly the same prompts.
        settings = {**settings, "recordPrompts": True}
        client = LspClient(server_argv(), settings=settings, cwd=workdir, stderr_path=stderr_path,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            client.initialize(root_uri=Path(workdir).as_uri())
            client.wait_for(lambda m, p: m == "ghostpilot/status"
                            and (p or {}).get("state") in ("ready", "error"), timeout=300)
            load_s = time.perf_counter() - started
            version = 1
            client.notify("textDocument/didOpen", {"textDocument": {
                "uri": uri, "languageId": "python", "version": version, "text": text}})
            _warm_up(client, uri, text, edits)
            profiler = Profiler(client.process.pid, profile) if profile else None
            try:
                replay = _drive(client, uri, text, edits, keystroke_s, log, progress, dwell_s)
            finally:
                if profiler is not None:
                    profiler.stop()
            replay.load_s = load_s
            final = client.request("ghostpilot/stats", {}) or {}
            replay.kv_cache, replay.threads = final.get("kvCache"), final.get("threads")
            replay.rss_mb = process_rss_mb(client.process.pid)
            replay.peak_rss_mb = process_rss_mb(client.process.pid, "VmHWM")
            replay.server_stdout_clean = not client.bad_output
        finally:
            client.close()
        return replay
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _warm_up(client: LspClient, uri: str, text: str, edits: Sequence[typing_replay.Edit]) -> None:
    """One untimed request, so the first timed one does not pay for cold caches."""
    line, character = utf16_position(text, edits[0].start)
    client.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
        "context": {"triggerKind": 1}}, timeout=300)


def _drive(client: LspClient, uri: str, text: str, edits: Sequence[typing_replay.Edit],
           keystroke_s: float, log: Callable[[str], None], progress: bool,
           dwell_s: float = 0.0) -> Replay:
    records: list[RequestRecord] = []
    snapshots: list[tuple[str, int]] = []
    version = 1
    keystrokes = 0
    total = sum(e.request for e in edits)
    for edit in edits:
        start = utf16_position(text, edit.start)
        end = utf16_position(text, edit.end)
        if edit.arrive:
            position = {"line": start[0], "character": start[1]}
            client.request("textDocument/codeAction", {
                "textDocument": {"uri": uri}, "range": {"start": position, "end": position},
                "context": {"diagnostics": []}}, timeout=60)
            if dwell_s:
                time.sleep(dwell_s)
        version += 1
        sent = client.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version},
            "contentChanges": [{"range": {
                "start": {"line": start[0], "character": start[1]},
                "end": {"line": end[0], "character": end[1]}}, "text": edit.new_text}]})
        text = typing_replay.apply(text, edit)
        keystrokes += edit.kind == "type"
        if not edit.request or edit.kind == "restore":
            if keystroke_s and edit.kind == "type":
                time.sleep(keystroke_s)
            continue
        cursor = edit.start + len(edit.new_text)
        line, character = utf16_position(text, cursor)
        answer = client.request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
            "context": {"triggerKind": 2}}, timeout=300)
        latency = (time.perf_counter() - sent) * 1000
        record = RequestRecord(index=len(records), function=edit.function,
                               keystroke=keystrokes, offset=cursor, latency_ms=latency,
                               phase=edit.phase)
        items = (answer or {}).get("items", []) if isinstance(answer, dict) else (answer or [])
        stats = client.request("ghostpilot/stats", {}) or {}
        last = stats.get("last") or {}
        suggestion_id = None
        if items:
            item = items[0]
            record.text = item.get("insertText", "")
            suggestion_id = ((item.get("command") or {}).get("arguments") or [None])[0]
            if last.get("id") == suggestion_id:
                record.mode = last.get("mode")
                record.cached = bool(last.get("cached"))
                record.server_latency_ms = float(last.get("latencyMs", 0.0))
            else:
                record.mode = "block" if "\n" in record.text else "line"
        job = stats.get("lastRequest") or {}
        if record.cached:
            record.outcome = "type-through cache"
        elif job:
            record.outcome = str(job.get("outcome", ""))
            record.prompt_tokens = int(job.get("promptTokens", 0))
            record.reused_tokens = int(job.get("reusedTokens", 0))
            record.evaluated_tokens = int(job.get("evaluatedTokens", 0))
            record.generated_tokens = int(job.get("generatedTokens", 0))
            record.decode_ms = float(job.get("decodeMs", 0.0))
            record.prompt_eval_ms = float(job.get("promptEvalMs", 0.0))
            record.queued_ms = float(job.get("queuedMs", 0.0))
            record.plan_ms = float(job.get("planMs", 0.0))
            record.prompt_ms = float(job.get("promptMs", 0.0))
            record.finish_ms = float(job.get("finishMs", 0.0))
            ids = job.get("promptTokenIds")
            record.prompt_ids = [int(i) for i in ids] if isinstance(ids, list) else None
        records.append(record)
        snapshots.append((text, cursor))
        if progress and (len(records) % 10 == 0 or len(records) == total):
            done = [r.latency_ms for r in records]
            log(f"  ours: {len(records)}/{total} requests, p50 {percentile(done, 50):.0f} ms")
    return Replay(records, keystrokes, len(edits), snapshots)


# --- exact prompts for the peer ---------------------------------------------------------


class _RecordingBackend:
    """Wraps a real backend; ``generate`` records the request's tokens instead."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.info = real.info
        self.requests: list[Any] = []

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self.real.tokenize(text, special=special))

    def close(self) -> None:
        """The real backend is the caller's to close."""

    def prompt_tokens(self, request: Any) -> list[int]:
        """The token list ``LlamaBackend.generate`` would evaluate for ``request``."""
        return list(self.real.request_tokens(request))

    def generate(self, request: Any, cancel: Any) -> Any:
        from lsp_server.backends.base import GenerationResult

        self.requests.append(request)
        return GenerationResult(text="")


def record_prompts(snapshots: Sequence[tuple[str, int]], *, settings: Any,
                   uri: str) -> list[list[int] | None]:
    """The prompt tokens our engine builds for each ``(text, cursor)``, in order, on one
    document that each text reaches by one edit (the span between the common prefix and
    suffix of it and the one before): its tree evolves as the server's does, with the
    edited statements parsed anew, not a fresh whole parse a request. What the server
    held between requests (used definitions adopted after a pause) is not replayed:
    :func:`peer_summary` counts the prompts whose length is not the server's."""
    from lsp_server.backends.llama import LlamaBackend
    from lsp_server.backends.registry import resolve
    from lsp_server.backends.worker import ModelWorker
    from lsp_server.engine import CompletionEngine
    from lsp_server.parsing.document import Document

    resolved = resolve(settings.model)
    real = LlamaBackend(str(resolved.path), name=resolved.name, n_ctx=settings.n_ctx,
                        n_threads=settings.n_threads, fim_template="auto")
    recorder = _RecordingBackend(real)
    worker = ModelWorker()
    worker.load(lambda: recorder, "recorder")
    worker.wait_loaded()
    engine = CompletionEngine(worker, lambda: settings)
    prompts: list[list[int] | None] = []
    document: Document | None = None
    try:
        for text, cursor in snapshots:
            before = len(recorder.requests)
            if document is None:
                document = Document(uri=uri, text=text, language_id="python")
            else:
                _edit_to(document, text)
            engine.complete_blocking(document, cursor)
            prompts.append(recorder.prompt_tokens(recorder.requests[-1])
                           if len(recorder.requests) > before else None)
    finally:
        worker.shutdown(timeout=30)
        del real
    return prompts


def _edit_to(document: Any, text: str) -> None:
    """Change ``document`` into ``text`` with one range edit."""
    from lsp_server.parsing.document import RangeEdit, common_ends

    old = document.text
    prefix, suffix = common_ends(old, text)
    start, end = utf16_position(old, prefix), utf16_position(old, len(old) - suffix)
    document.apply(RangeEdit((start, end), text[prefix : len(text) - suffix]))


# --- report -----------------------------------------------------------------------------


def summarize(replay: Replay) -> dict[str, Any]:
    records = replay.records
    single = [r.latency_ms for r in records if r.mode == "line"]
    multi = [r.latency_ms for r in records if r.mode == "block"]
    empty = [r.latency_ms for r in records if r.mode is None]
    generated = [r for r in records if r.model_ran]
    with_prompt = [r for r in generated if r.prompt_tokens]
    shares = [r.evaluated_tokens / r.prompt_tokens for r in with_prompt]
    decode = [r.generated_tokens / (r.decode_ms / 1000) for r in generated
              if r.decode_ms > 0 and r.generated_tokens > 1]
    return {
        "keystrokes": replay.keystrokes,
        "requests": len(records),
        "suggestions": sum(r.mode is not None for r in records),
        "cached_suggestions": sum(r.cached for r in records),
        "latency": {
            "single_line": latency_stats(single),
            "multi_line": latency_stats(multi),
            "no_suggestion": latency_stats(empty),
            "all": latency_stats([r.latency_ms for r in records]),
        },
        "prompt_tokens": {
            "requests_with_generation": len(with_prompt),
            "prompt_total": sum(r.prompt_tokens for r in with_prompt),
            "evaluated_total": sum(r.evaluated_tokens for r in with_prompt),
            "reused_total": sum(r.reused_tokens for r in with_prompt),
            "evaluated_share_mean": round(sum(shares) / len(shares), 4) if shares else None,
            "evaluated_share_p50": round(percentile(shares, 50), 4) if shares else None,
            "evaluated_share_p95": round(percentile(shares, 95), 4) if shares else None,
            "mean_prompt_tokens": round(sum(r.prompt_tokens for r in with_prompt)
                                        / len(with_prompt), 1) if with_prompt else None,
        },
        "decode_tokens_per_s": {
            "p50": round(percentile(decode, 50), 1) if decode else None,
            "mean": round(sum(decode) / len(decode), 1) if decode else None,
            "requests": len(decode),
        },
        "server_rss_mb": {"end": _round(replay.rss_mb), "peak": _round(replay.peak_rss_mb)},
        "model_load_s": round(replay.load_s, 2),
        "stdout_only_jsonrpc": replay.server_stdout_clean,
        "kv_cache": replay.kv_cache,
        "threads": replay.threads,
        "phases": phase_summary(records),
        "server_side_ms": server_side(records),
        "nothing_generated": latency_stats([r.latency_ms for r in records
                                            if not r.cached and r.generated_tokens == 0]),
    }


PHASES = ("first", "return", "warm")


def phase_summary(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Jump pattern: latency and prompt tokens evaluated per phase (empty for typing)."""
    out: dict[str, Any] = {}
    for phase in PHASES:
        chosen = [r for r in records if r.phase == phase]
        if not chosen:
            continue
        ran = [r for r in chosen if r.model_ran]
        out[phase] = {
            "latency": latency_stats([r.latency_ms for r in chosen]),
            "model_ran": len(ran),
            "evaluated_tokens": _token_stats([r.evaluated_tokens for r in ran]),
            "prompt_tokens": _token_stats([r.prompt_tokens for r in ran]),
            "not_decode_ms": latency_stats([r.not_decode_ms for r in ran]),
        }
    return out


def server_side(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Medians of the server's own steps, over the requests where the model ran."""
    ran = [r for r in records if r.model_ran]
    if not ran:
        return {}
    steps = {"queued": "queued_ms", "plan": "plan_ms", "prompt": "prompt_ms",
             "prompt_eval": "prompt_eval_ms", "decode": "decode_ms", "finish": "finish_ms"}
    out: dict[str, Any] = {name: round(percentile([getattr(r, key) for r in ran], 50), 2)
                           for name, key in steps.items()}
    server = [r.queued_ms + r.plan_ms + r.prompt_ms + r.prompt_eval_ms + r.finish_ms for r in ran]
    transport = [r.latency_ms - r.decode_ms - s for r, s in zip(ran, server)]
    out["server_not_decode_p50"] = round(percentile(server, 50), 2)
    out["transport_and_rest_p50"] = round(percentile(transport, 50), 2)
    return out


def _token_stats(values: Sequence[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "total": sum(values), "p50": round(percentile(values, 50), 1),
            "p95": round(percentile(values, 95), 1), "mean": round(sum(values) / len(values), 1)}


def peer_summary(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """Ours and the peer on the requests both generated for (the same prompts)."""
    paired = [r for r in records if r.peer is not None]
    out: dict[str, Any] = {"paired_requests": len(paired), "prompt_length_differs": sum(
        len(r.peer.get("tokens") or ()) != r.prompt_tokens for r in paired)}  # type: ignore[union-attr]
    for name, mode in (("single_line", "line"), ("multi_line", "block"), ("all", None)):
        chosen = [r for r in paired if mode is None or r.mode == mode]
        ours = [r.latency_ms for r in chosen]
        theirs = [float(r.peer["latency_ms"]) for r in chosen]  # type: ignore[index]
        entry: dict[str, Any] = {"ours": latency_stats(ours), "llama_server": latency_stats(theirs)}
        if ours and theirs:
            entry["ratio_p50"] = round(percentile(ours, 50) / percentile(theirs, 50), 3)
            entry["ratio_p95"] = round(percentile(ours, 95) / percentile(theirs, 95), 3)
        out[name] = entry
    ours_nd = [r.not_decode_ms for r in paired]
    theirs_nd = [float(r.peer["latency_ms"]) - float(r.peer.get("predicted_ms", 0.0))  # type: ignore[index,union-attr]
                 for r in paired]
    out["not_decode"] = {"ours": latency_stats(ours_nd), "llama_server": latency_stats(theirs_nd)}
    if ours_nd:
        out["not_decode"]["ratio_p50"] = round(percentile(ours_nd, 50)
                                               / max(percentile(theirs_nd, 50), 1e-6), 3)
    for phase in PHASES:
        chosen = [r for r in paired if r.phase == phase]
        if chosen:
            ours = [r.latency_ms for r in chosen]
            theirs = [float(r.peer["latency_ms"]) for r in chosen]  # type: ignore[index]
            peer_evaluated = [int(r.peer["prompt_n"]) for r in chosen]  # type: ignore[index]
            out[phase] = {
                "ours": latency_stats(ours), "llama_server": latency_stats(theirs),
                "ratio_p50": round(percentile(ours, 50) / percentile(theirs, 50), 3),
                "ratio_p95": round(percentile(ours, 95) / percentile(theirs, 95), 3),
                "ours_evaluated": sum(r.evaluated_tokens for r in chosen),
                "peer_evaluated": sum(peer_evaluated),
            }
    peers: list[dict[str, Any]] = [r.peer for r in paired if r.peer is not None]
    prompt_n = sum(int(peer["prompt_n"]) for peer in peers)
    total = sum(len(peer.get("tokens", [])) for peer in peers)
    out["peer_prompt_tokens_evaluated"] = prompt_n
    out["peer_prompt_tokens_total"] = total
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def record_json(record: RequestRecord) -> dict[str, Any]:
    data = asdict(record)
    data.pop("prompt_ids", None)  # the peer's tokens, large; their count is prompt_tokens
    if data.get("peer"):
        data["peer"] = {k: v for k, v in data["peer"].items() if k != "tokens"}
    return data
