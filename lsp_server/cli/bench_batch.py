"""``ghostpilot bench batch``: k samples of a HumanEval-sized prompt decoded as one
llama.cpp batch (backends/batch.py) against the same k decoded one after another, side
by side in one run, for k = 1, 4, 8, 16; then the time to the first tested candidate
(draw k in one batch, run each in the sandbox against the docstring's examples).

Throughput is generated tokens over wall time (prompt evaluation included: the batch
evaluates the prompt once, the sequential run once too, then reuses its cache). Tokens/s
per sequence is what one candidate sees; the speed-up compares the batch's tokens/s
with the sequential run's."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

DEFAULT_TASKS = ("HumanEval/0", "HumanEval/12", "HumanEval/31")


def add_parser(kinds: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = kinds.add_parser("batch", help="k samples in one batch vs one after another",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--k", default="1,4,8,16", help="batch sizes, e.g. 1,4,8,16")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="HumanEval task ids (prompts)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per sample (default 128)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--model", help="GGUF path or registry name (default: embedded)")
    parser.add_argument("--threads", type=int, help="threads (default: all cores)")
    parser.add_argument("--tested-k", type=int, default=8, help="k for the time to a tested candidate")
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    parser.set_defaults(func=run)


def measure(backend: Any, request: Any, k: int, *, batched: bool) -> dict[str, float]:
    """One k-sample draw of ``request``: wall time and generated tokens."""
    from lsp_server.backends.base import CancelToken
    from lsp_server.backends.batch import sample_k

    class Sequential:  # the backend without its batch: sample_k then draws one by one
        def __init__(self, inner: Any) -> None:
            self.generate = inner.generate

    started = time.perf_counter()
    results = sample_k(backend if batched else Sequential(backend), request, k, CancelToken())
    wall = time.perf_counter() - started
    tokens = sum(r.token_count for r in results)
    return {"k": k, "wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall if wall else 0.0,
            "tokens_per_s_per_sequence": tokens / wall / k if batched and wall else
            (tokens / wall if wall else 0.0)}


def _on_worker(backend: Any, token: Any, *, request: Any, k: int, batched: bool) -> dict[str, float]:
    return measure(backend, request, k, batched=batched)


def run(args: argparse.Namespace) -> int:
    from lsp_server.backends.base import GenerationRequest, ModelUnavailable
    from lsp_server.evaluation.sampling import load_engine_sampler
    from lsp_server.evaluation.tasks import load_humaneval

    try:
        ks = sorted({int(x) for x in args.k.split(",") if x.strip()})
        if not ks or min(ks) < 1:
            raise ValueError("--k needs positive sizes")
        wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
        tasks = {t.task_id: t for t in load_humaneval()}
        chosen = [tasks[t] for t in wanted]
    except (ValueError, KeyError) as error:
        print(f"ghostpilot bench batch: {error}", file=sys.stderr)
        return 2
    try:
        sampler = load_engine_sampler(args.model, max_tokens=args.max_tokens, n_threads=args.threads)
    except ModelUnavailable as error:
        print(f"ghostpilot bench batch: {error}", file=sys.stderr)
        return 1
    worker = sampler.engine.worker
    rows: list[dict[str, Any]] = []
    print(f"{'k':>3} {'task':<14} {'batched tok/s':>14} {'per seq':>8} {'sequential tok/s':>17} "
          f"{'speed-up':>9} {'batched s':>10} {'sequential s':>13}")
    for task in chosen:
        request = GenerationRequest(prompt=task.prompt, max_tokens=args.max_tokens,
                                    temperature=args.temperature, top_p=0.95, seed=1, logprobs=True,
                                    stop=("\ndef ", "\nclass ", "\nif __name__", "\nprint("))
        warm = replace(request, max_tokens=8)
        worker.run_blocking(lambda backend, token: measure(backend, warm, 2, batched=True))  # noqa: B023
        for k in ks:
            batched = worker.run_blocking(partial(_on_worker, request=request, k=k, batched=True))
            sequential = worker.run_blocking(partial(_on_worker, request=request, k=k, batched=False))
            speedup = batched["tokens_per_s"] / sequential["tokens_per_s"] if sequential["tokens_per_s"] else 0.0
            rows.append({"task": task.task_id, "k": k, "batched": batched, "sequential": sequential,
                         "speedup": speedup})
            print(f"{k:>3} {task.task_id:<14} {batched['tokens_per_s']:>14.1f} "
                  f"{batched['tokens_per_s_per_sequence']:>8.1f} {sequential['tokens_per_s']:>17.1f} "
                  f"{speedup:>8.2f}x {batched['wall_s']:>10.2f} {sequential['wall_s']:>13.2f}", flush=True)
    summary = {}
    for k in ks:
        mine = [r for r in rows if r["k"] == k]
        b = sum(r["batched"]["tokens"] for r in mine) / sum(r["batched"]["wall_s"] for r in mine)
        s = sum(r["sequential"]["tokens"] for r in mine) / sum(r["sequential"]["wall_s"] for r in mine)
        summary[str(k)] = {"batched_tokens_per_s": b, "batched_tokens_per_s_per_sequence": b / k,
                           "sequential_tokens_per_s": s, "speedup": b / s if s else 0.0}
        print(f"k={k:<3} all tasks: batched {b:.1f} tok/s ({b / k:.1f} per sequence), "
              f"sequential {s:.1f} tok/s, speed-up {b / s if s else 0:.2f}x")
    tested = [time_to_tested(sampler, task, args.tested_k, args.temperature) for task in chosen]
    for entry in tested:
        print(f"tested k={args.tested_k} {entry['task']}: first tested candidate after "
              f"{entry['first_tested_s']:.2f} s (drawn in {entry['drawn_s']:.2f} s), all "
              f"{entry['distinct']} tested after {entry['all_tested_s']:.2f} s; {entry['summary']}")
    report = {"command": "ghostpilot bench batch " + " ".join(sys.argv[3:]), "rows": rows,
              "summary": summary, "tested": tested, "max_tokens": args.max_tokens,
              "temperature": args.temperature}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    worker.shutdown(timeout=30)
    return 0


def time_to_tested(sampler: Any, task: Any, k: int, temperature: float) -> dict[str, Any]:
    """Draw ``k`` candidates for ``task`` as the editor does (each tested in the sandbox
    as soon as its sequence ends); when the first candidate's evidence is in, and all."""
    from lsp_server.engine import Overrides
    from lsp_server.tested import Candidate, function_at
    from lsp_server.tested.pipeline import Tester
    from lsp_server.tested.target import checks_for

    text, cursor = task.document_text, task.cursor
    target = function_at(text, cursor)
    checks = checks_for(target) if target is not None else None
    if checks is None or checks.empty:
        return {"task": task.task_id, "drawn_s": float("nan"), "first_tested_s": float("nan"),
                "all_tested_s": float("nan"), "distinct": 0, "summary": "no examples"}
    first: list[float] = []
    started = time.perf_counter()

    def progress(done: int, total: int, passing: int) -> None:
        if done and not first:
            first.append(time.perf_counter() - started)

    tester = Tester(text, checks, progress=progress, expected=k)
    sampler.engine.candidates_blocking(
        sampler._document(text), cursor, k=k,
        overrides=Overrides("block", sampler.max_tokens, temperature, 0.95, 1),
        on_candidate=lambda i, s: tester.add(Candidate(s.text, s.start, s.end, s.mean_logprob, i)))
    drawn_s = time.perf_counter() - started
    outcome = tester.outcome()
    return {"task": task.task_id, "drawn_s": drawn_s, "first_tested_s": first[0] if first else float("nan"),
            "all_tested_s": time.perf_counter() - started, "distinct": len(outcome.candidates),
            "passing": outcome.passing, "summary": outcome.summary()}
