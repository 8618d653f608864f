"""``ghostpilot bench team``: N editors typing at once against one shared engine.

Each simulated editor retypes one function body of a real third-party Python file (a
different stdlib module per editor) at a steady typing pace, in its own thread. One
llama-server started with ``--parallel N`` (``cache_prompt`` on in every request) serves
them all. Two clients replay the same typing, one after the other, in the same run:

- ``ghostpilot``: each editor is its own ``ghostpilot serve`` process with ``backend:
  llama-server``. As editors do, a request still pending when the next one goes out is
  cancelled (``$/cancelRequest``) and the server supersedes it, closing its stream, so
  the engine stops generating it.
- ``naive``: a plugin that sends the same prompts (built by our engine beforehand) and
  waits every request out, never cancelling.

For each: p50/p95 keystroke -> suggestion (a suggestion counts when it arrives before the
editor's next request; later ones are stale), suggestions/s over all editors, the
engine's prompt-cache hit ratio (reused / prompt tokens, from its ``timings``) and the
tokens generated that nobody could use, as a share of all the engine generated (its
``/metrics``): for ``ghostpilot``, every token not received by a request that ran to its
end or to a client-side stop (so a stream's few tokens after a stop count as waste too);
for ``naive``, the tokens of stale answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp_server.evaluation import llama_peer, typing_replay
from lsp_server.evaluation.latency import percentile, server_argv
from lsp_server.evaluation.lsp_client import LspClient, utf16_position

# Real third-party code: one stdlib module per editor (different functions, different files).
FILES = ("textwrap.py", "shlex.py", "difflib.py", "csv.py", "configparser.py", "argparse.py",
         "tarfile.py", "json/decoder.py")  # fmt: skip
USAGE_LOG_ENV = "GHOSTPILOT_REMOTE_USAGE_LOG"  # lsp_server.backends.remote.backend
CLIENTS = ("ghostpilot", "naive")


@dataclass
class EditorPlan:
    name: str
    path: Path
    text: str
    edits: list[typing_replay.Edit]


def editor_plans(count: int, keystrokes: int, files: Sequence[str] = FILES) -> list[EditorPlan]:
    """One function body to retype per editor, each in a different stdlib module."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    plans = []
    for index in range(count):
        path = stdlib / files[index % len(files)]
        text = path.read_text(encoding="utf-8")
        bodies = typing_replay.function_bodies(text, min_lines=4, max_lines=25)
        body = bodies[(len(bodies) // 2 + index // len(files)) % len(bodies)]
        original = text[body.start:body.end]
        edits = [typing_replay.Edit(body.start, body.end, "", request=True, kind="delete",
                                    function=body.name)]  # fmt: skip
        position = body.start
        for typed, (piece, request) in enumerate(typing_replay.keystrokes(original)):
            if typed >= keystrokes:
                break
            edits.append(typing_replay.Edit(position, position, piece, request=request,
                                            function=body.name))  # fmt: skip
            position += len(piece)
        plans.append(EditorPlan(f"{path.name}:{body.name}", path, text, edits))
    return plans


# -- the engine --------------------------------------------------------------------------


class Engine:
    """llama-server with ``parallel`` slots on a loopback port."""

    def __init__(self, exe: Path, model: str, *, parallel: int, threads: int,
                 ctx_per_slot: int, log_path: str | None = None) -> None:  # fmt: skip
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [str(exe), "-m", model, "-t", str(threads), "-tb", str(threads),
                     "-c", str(ctx_per_slot * parallel), "--parallel", str(parallel),
                     "--cont-batching", "--cache-reuse", "256", "--swa-full", "--metrics",
                     "--slots", "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama-server did not become ready in 300 s")
            time.sleep(0.2)

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as reply:
            return bytes(reply.read())

    def idle(self, timeout: float = 60.0) -> None:
        """Wait until no slot is processing (the counters of the last tasks are in)."""
        deadline = time.monotonic() + timeout
        while any(slot.get("is_processing") for slot in json.loads(self._get("/slots"))):
            if time.monotonic() > deadline:
                raise RuntimeError("the engine is still generating")
            time.sleep(0.05)

    def predicted_total(self) -> int:
        found = re.search(rb"^llamacpp:tokens_predicted_total (\d+(?:\.\d+)?)",
                          self._get("/metrics"), re.M)  # fmt: skip
        if not found:
            raise RuntimeError("no llamacpp:tokens_predicted_total in /metrics")
        return int(float(found.group(1)))

    def complete(self, tokens: Sequence[int], n_predict: int) -> dict[str, Any]:
        """A naive plugin's request: not streamed, waited out."""
        body = json.dumps({"prompt": list(tokens), "n_predict": n_predict, "cache_prompt": True,
                           "temperature": 0.0, "stream": False,
                           "stop": ["\n\n\n", "\ndef ", "\nclass "]}).encode()  # fmt: skip
        request = urllib.request.Request(self.url + "/completion", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=600) as reply:
            return dict(json.loads(reply.read()))

    def close(self) -> None:
        llama_peer.stop_server(self.process, self._log)


# -- what each editor saw ------------------------------------------------------------------


@dataclass
class EditorResult:
    name: str
    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # suggestions shown in time
    stale: int = 0  # answered after the editor's next request
    empty: int = 0  # answered in time, without a suggestion
    superseded: int = 0  # cancelled by the editor (ghostpilot client)
    naive_tokens: list[tuple[int, bool]] = field(default_factory=list)  # (generated, useful)
    prompt_tokens: int = 0
    reused_tokens: int = 0


def _change(client: LspClient, uri: str, version: int, text: str, edit: typing_replay.Edit) -> float:
    start = utf16_position(text, edit.start)
    end = utf16_position(text, edit.end)
    return client.notify("textDocument/didChange", {
        "textDocument": {"uri": uri, "version": version},
        "contentChanges": [{"range": {"start": {"line": start[0], "character": start[1]},
                                      "end": {"line": end[0], "character": end[1]}},
                            "text": edit.new_text}]})  # fmt: skip


def _items(answer: Any) -> list[Any]:
    if isinstance(answer, dict):
        return list(answer.get("items") or [])
    return list(answer or [])


def replay_ghostpilot(client: LspClient, uri: str, plan: EditorPlan, keystroke_s: float,
                      start: threading.Barrier) -> EditorResult:  # fmt: skip
    """Type at a steady pace; a request still pending when the next goes out is cancelled."""
    result = EditorResult(plan.name)
    text = plan.text
    pending: list[tuple[int, Future[Any], float]] = []  # (request id, answer, keystroke time)
    lock = threading.Lock()
    start.wait()
    next_at = time.perf_counter()
    version = 1
    for edit in plan.edits:
        version += 1
        sent = _change(client, uri, version, text, edit)
        text = typing_replay.apply(text, edit)
        if edit.request:
            with lock:
                for request_id, future, _ in pending:
                    if not future.done():
                        client.notify("$/cancelRequest", {"id": request_id})
                        result.superseded += 1
                pending.clear()
            line, character = utf16_position(text, edit.start + len(edit.new_text))
            request_id = next(client._ids)  # known before sending, for $/cancelRequest
            future = _request_with_id(client, request_id, uri, line, character)
            result.requests += 1
            keystroke = sent

            def answered(done: Future[Any], keystroke: float = keystroke) -> None:
                arrived = time.perf_counter()
                with lock:
                    current = any(f is done for _, f, _ in pending)
                try:
                    items = _items(done.result())
                except Exception:  # cancelled by us, or an error: no suggestion
                    return
                if not current:
                    result.stale += 1
                elif items:
                    result.latencies_ms.append((arrived - keystroke) * 1000)
                else:
                    result.empty += 1

            with lock:
                pending.append((request_id, future, keystroke))
            future.add_done_callback(answered)
        next_at += keystroke_s
        time.sleep(max(0.0, next_at - time.perf_counter()))
    with lock:
        last = list(pending)
    for _, future, _ in last:  # the last request: the typist pauses, and waits for it
        try:
            future.result(timeout=300)
        except Exception:
            pass
    time.sleep(0.05)
    return result


def _request_with_id(client: LspClient, request_id: int, uri: str, line: int,
                     character: int) -> Future[Any]:  # fmt: skip
    future: Future[Any] = Future()
    with client._lock:
        client._pending[request_id] = future
    client._send({"jsonrpc": "2.0", "id": request_id, "method": "textDocument/inlineCompletion",
                  "params": {"textDocument": {"uri": uri},
                             "position": {"line": line, "character": character},
                             "context": {"triggerKind": 2}}})  # fmt: skip
    return future


def replay_naive(engine: Engine, plan: EditorPlan, prompts: list[list[int] | None],
                 n_predict: list[int], keystroke_s: float, start: threading.Barrier,
                 pool: ThreadPoolExecutor) -> EditorResult:  # fmt: skip
    """The same typing; each prompt is sent and waited out, never cancelled."""
    result = EditorResult(plan.name)
    outstanding: list[Future[None]] = []
    latest = [0]
    lock = threading.Lock()
    start.wait()
    next_at = time.perf_counter()
    index = 0
    for edit in plan.edits:
        keystroke = time.perf_counter()
        if edit.request:
            tokens = prompts[index]
            predict = n_predict[index]
            index += 1
            result.requests += 1
            with lock:
                latest[0] = index
            if tokens:
                number = index

                def run(tokens: list[int] = tokens, predict: int = predict, number: int = number,
                        keystroke: float = keystroke) -> None:  # fmt: skip
                    answer = engine.complete(tokens, predict)
                    arrived = time.perf_counter()
                    timings = answer.get("timings") or {}
                    generated = int(timings.get("predicted_n") or answer.get("tokens_predicted") or 0)
                    with lock:
                        in_time = latest[0] == number
                        result.prompt_tokens += len(tokens)
                        result.reused_tokens += int(timings.get("cache_n") or 0)
                        result.naive_tokens.append((generated, in_time))
                        if not in_time:
                            result.stale += 1
                        elif str(answer.get("content") or "").strip():
                            result.latencies_ms.append((arrived - keystroke) * 1000)
                        else:
                            result.empty += 1

                outstanding.append(pool.submit(run))
        next_at += keystroke_s
        time.sleep(max(0.0, next_at - time.perf_counter()))
    for future in outstanding:
        future.result(timeout=600)
    return result


# -- one configuration ---------------------------------------------------------------------


def _usage(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarize(results: Sequence[EditorResult], wall_s: float, *, generated_total: int,
              wasted: int, prompt: int, reused: int) -> dict[str, Any]:  # fmt: skip
    latencies = [value for r in results for value in r.latencies_ms]
    shown = len(latencies)
    return {
        "editors": len(results),
        "requests": sum(r.requests for r in results),
        "suggestions": shown,
        "stale": sum(r.stale for r in results),
        "empty": sum(r.empty for r in results),
        "superseded": sum(r.superseded for r in results),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
        "suggestions_per_s": round(shown / wall_s, 2) if wall_s > 0 else None,
        "wall_s": round(wall_s, 1),
        "prompt_cache_hit": round(reused / prompt, 3) if prompt else None,
        "generated_tokens": generated_total,
        "wasted_tokens": wasted,
        "wasted_share": round(wasted / generated_total, 3) if generated_total else None,
    }


def run_ghostpilot(engine: Engine | None, plans: Sequence[EditorPlan], *, keystroke_s: float,
                   settings: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Every editor its own ``ghostpilot serve``; ``engine`` None: the in-process model."""
    workdir = Path(tempfile.mkdtemp(prefix="ghostpilot-team-"))
    usage = workdir / "usage.jsonl"
    clients: list[tuple[LspClient, str, EditorPlan]] = []
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", USAGE_LOG_ENV: str(usage)}
        for index, plan in enumerate(plans):
            copy = workdir / f"editor{index}" / plan.path.name
            copy.parent.mkdir(parents=True)
            copy.write_text(plan.text, encoding="utf-8")
            config = dict(settings)
            if engine is not None:
                config.update(backend="llama-server", endpoint=engine.url)
            client = LspClient(server_argv(), settings=config, env=env, cwd=str(copy.parent),
                               stderr_path=str(workdir / f"editor{index}.log"))  # fmt: skip
            clients.append((client, copy.as_uri(), plan))
        for client, uri, plan in clients:
            client.initialize()
            client.wait_for(lambda m, p: m == "ghostpilot/status"
                            and (p or {}).get("state") in ("ready", "error"), timeout=300)  # fmt: skip
            client.notify("textDocument/didOpen", {"textDocument": {
                "uri": uri, "languageId": "python", "version": 1, "text": plan.text}})  # fmt: skip
            first = plan.edits[0]
            line, character = utf16_position(plan.text, first.start)
            client.request("textDocument/inlineCompletion", {  # warm-up, untimed
                "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
                "context": {"triggerKind": 1}}, timeout=300)  # fmt: skip
        if engine is not None:
            engine.idle()
            before = engine.predicted_total()
        if usage.exists():
            usage.unlink()
        barrier = threading.Barrier(len(clients))
        with ThreadPoolExecutor(len(clients)) as pool:
            started = time.perf_counter()
            futures = [pool.submit(replay_ghostpilot, client, uri, plan, keystroke_s, barrier)
                       for client, uri, plan in clients]  # fmt: skip
            results = [future.result() for future in futures]
            wall = time.perf_counter() - started
        records = _usage(usage)
        if engine is not None:
            engine.idle()
            generated = engine.predicted_total() - before
            useful = sum(int(r["received"]) for r in records if r["outcome"] != "cancelled")
        else:
            generated, useful = 0, 0
        summary = summarize(results, wall, generated_total=generated, wasted=max(0, generated - useful),
                            prompt=sum(int(r["prompt"]) for r in records),
                            reused=sum(int(r.get("reused") or 0) for r in records))  # fmt: skip
        summary["outcomes"] = {o: sum(1 for r in records if r["outcome"] == o)
                               for o in ("ended", "stopped", "cancelled", "failed")}  # fmt: skip
        log(f"  ghostpilot x{len(plans)}: p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms,"
            f" wasted {summary['wasted_share']}")
        return summary
    finally:
        for client, _, _ in clients:
            client.close()
        shutil.rmtree(workdir, ignore_errors=True)


def naive_prompts(plans: Sequence[EditorPlan], model: str,
                  settings: Any) -> tuple[list[list[list[int] | None]], list[list[int]]]:  # fmt: skip
    """The prompts our engine builds at each request point (the naive client sends them)."""
    from lsp_server.evaluation.latency import record_prompts

    all_prompts, all_predict = [], []
    for plan in plans:
        snapshots: list[tuple[str, int]] = []
        predict: list[int] = []
        text = plan.text
        for edit in plan.edits:
            text = typing_replay.apply(text, edit)
            if edit.request:
                cursor = edit.start + len(edit.new_text)
                snapshots.append((text, cursor))
                line_start = text.rfind("\n", 0, cursor) + 1
                mid_line = bool(text[line_start:cursor].strip())
                predict.append(settings.max_line_tokens if mid_line else settings.max_tokens)
        all_prompts.append(record_prompts(snapshots, settings=settings, uri=plan.path.as_uri()))
        all_predict.append(predict)
    return all_prompts, all_predict


def run_naive(engine: Engine, plans: Sequence[EditorPlan], prompts: Sequence[list[list[int] | None]],
              predict: Sequence[list[int]], *, keystroke_s: float,
              log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    for tokens in prompts:  # warm-up, untimed: the first prompt of each editor
        first = next((t for t in tokens if t), None)
        if first:
            engine.complete(first, 1)
    engine.idle()
    before = engine.predicted_total()
    barrier = threading.Barrier(len(plans))
    with ThreadPoolExecutor(len(plans) * 64) as requests, ThreadPoolExecutor(len(plans)) as pool:
        started = time.perf_counter()
        futures = [pool.submit(replay_naive, engine, plan, list(tokens), list(n), keystroke_s,
                               barrier, requests)
                   for plan, tokens, n in zip(plans, prompts, predict)]  # fmt: skip
        results = [future.result() for future in futures]
        wall = time.perf_counter() - started
    engine.idle()
    generated = engine.predicted_total() - before
    wasted = sum(tokens for r in results for tokens, useful in r.naive_tokens if not useful)
    summary = summarize(results, wall, generated_total=generated, wasted=wasted,
                        prompt=sum(r.prompt_tokens for r in results),
                        reused=sum(r.reused_tokens for r in results))  # fmt: skip
    log(f"  naive x{len(plans)}: p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms,"
        f" wasted {summary['wasted_share']}")
    return summary


def run(exe: Path, model: str, *, sizes: Sequence[int], keystrokes: int, keystroke_ms: float,
        threads: int, ctx_per_slot: int, settings: dict[str, Any], local: bool,
        log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """The whole bench: for each N, one engine, both clients; optionally one in-process editor."""
    from lsp_server.config import Settings, merge

    merged, problems = merge(Settings(), {"nThreads": threads, **settings})
    if problems:
        raise ValueError("; ".join(problems))
    report: dict[str, Any] = {
        "model": model, "threads": threads, "keystrokes_per_editor": keystrokes,
        "keystroke_ms": keystroke_ms, "ctx_per_slot": ctx_per_slot, "sizes": {},
        "python": sys.version.split()[0],
    }
    keystroke_s = keystroke_ms / 1000
    all_plans = editor_plans(max(sizes), keystrokes)
    report["editors"] = [p.name for p in all_plans]
    log("building the naive client's prompts with our engine ...")
    prompts, predict = naive_prompts(all_plans, model, merged)
    for size in sizes:
        plans = all_plans[:size]
        log(f"N = {size}: llama-server --parallel {size}")
        engine = Engine(exe, model, parallel=size, threads=threads, ctx_per_slot=ctx_per_slot)
        try:
            entry: dict[str, Any] = {"argv": engine.argv[1:]}
            entry["ghostpilot"] = run_ghostpilot(engine, plans, keystroke_s=keystroke_s,
                                                 settings=settings, log=log)  # fmt: skip
            entry["naive"] = run_naive(engine, plans, prompts[:size], predict[:size],
                                       keystroke_s=keystroke_s, log=log)  # fmt: skip
        finally:
            engine.close()
        report["sizes"][str(size)] = entry
    if local:
        log("N = 1, in-process model (no engine)")
        report["local"] = run_ghostpilot(None, all_plans[:1], keystroke_s=keystroke_s,
                                         settings=settings, log=log)  # fmt: skip
    one = report["sizes"].get("1", {}).get("ghostpilot", {})
    four = report["sizes"].get("4", {}).get("ghostpilot", {})
    if one.get("p95_ms") and four.get("p95_ms"):
        report["p95_n4_over_n1"] = round(four["p95_ms"] / one["p95_ms"], 2)
    if report.get("local", {}).get("p50_ms") and one.get("p50_ms"):
        report["remote_overhead_p50_ms"] = round(one["p50_ms"] - report["local"]["p50_ms"], 1)
    return report


def table(report: dict[str, Any]) -> str:
    lines = [f"model: {report['model']}  engine threads: {report['threads']}  keystrokes per editor: "
             f"{report['keystrokes_per_editor']} every {report['keystroke_ms']:g} ms",
             "editors: " + ", ".join(report["editors"]), "",
             "| N | client | requests | suggestions | stale | p50 ms | p95 ms | suggestions/s "
             "| prompt-cache hit | generated | wasted | wasted share |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = [(size, name, entry[name]) for size, entry in report["sizes"].items() for name in CLIENTS]
    if "local" in report:
        rows.append(("1", "in-process", report["local"]))
    for size, name, s in rows:
        lines.append(f"| {size} | {name} | {s['requests']} | {s['suggestions']} | {s['stale']} | "
                     f"{s['p50_ms']} | {s['p95_ms']} | {s['suggestions_per_s']} | "
                     f"{s['prompt_cache_hit']} | {s['generated_tokens']} | {s['wasted_tokens']} | "
                     f"{s['wasted_share']} |")  # fmt: skip
    if "p95_n4_over_n1" in report:
        lines.append(f"\np95 at N=4 / p95 at N=1 (ghostpilot): {report['p95_n4_over_n1']} (target <= 2)")
    if "remote_overhead_p50_ms" in report:
        lines.append(f"remote path p50 - in-process p50 at N=1: {report['remote_overhead_p50_ms']} ms"
                     " (target <= +15 ms)")  # fmt: skip
    return "\n".join(lines) + "\n"
