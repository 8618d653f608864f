"""``ghostpilot eval``: functional correctness of the product's completions.

- ``ghostpilot eval humaneval``: HumanEval pass@k (Codex protocol), optionally with
  samples ranked by mean log-probability or by the docstring's own examples;
- ``ghostpilot eval infilling --benchmark single-line|multi-line [--data DIR]``:
  HumanEval-Infilling.

Every sample runs in the sandbox; the output directory gets ``samples.jsonl``
(append-only, for ``--resume``), ``results.json``, ``summary.md`` and ``passk.png``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path

# In the source checkout, with its MIT licence (an editable install finds it from here).
DEFAULT_INFILLING_DATA = (
    Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "humaneval-infilling")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "eval", help="measure pass@k on HumanEval / HumanEval-Infilling (sandboxed)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    humaneval = benchmarks.add_parser("humaneval", help="HumanEval (164 tasks)")
    _common(humaneval)
    humaneval.add_argument("--rank", choices=("none", "logprob", "doctest"), default="none",
                           help="pick one of the samples per task: by mean log-prob, or one "
                                "passing the docstring's >>> examples (default: none)")
    humaneval.set_defaults(func=run)
    infilling = benchmarks.add_parser("infilling", help="HumanEval-Infilling")
    infilling.add_argument("--benchmark", dest="infill", choices=("single-line", "multi-line"),
                           default="single-line")
    infilling.add_argument("--data", type=Path, default=DEFAULT_INFILLING_DATA,
                           help="directory with HumanEval-*Infilling.jsonl.gz "
                                "(default: benchmarks/data/humaneval-infilling)")
    _common(infilling)
    infilling.set_defaults(func=run, rank="none")
    __import__("lsp_server.cli.eval_docstring", fromlist=["_"]).add_subparser(benchmarks)
    parser.set_defaults(func=lambda args: _usage(parser))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="GGUF path or registry name (default: embedded)")
    parser.add_argument("--n", type=int, default=None,
                        help="samples per task (default 1, greedy; 10 with --rank)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature (default: grows with --n as in Codex)")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--k", default="1,10,100", help="comma-separated k for pass@k")
    parser.add_argument("--limit", type=int, help="only the first N tasks")
    parser.add_argument("--workers", type=int, default=2, help="parallel sandbox runs")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="tokens per completion (default 384, 48 for single-line)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per sample run")
    parser.add_argument("--n-threads", type=int, help="model threads")
    parser.add_argument("--n-gpu-layers", type=int, help="layers to offload to a GPU (-1: all; needs a GPU build, see README)")
    parser.add_argument("--out", type=Path, help="output directory (default artifacts/eval/...)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out without redoing finished samples")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(f"--k expects comma-separated integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ValueError(f"--k expects positive integers, got {text!r}")
    return ks


def run(args: argparse.Namespace) -> int:
    from lsp_server.backends.base import ModelUnavailable
    from lsp_server.config import DEFAULT_MODEL
    from lsp_server.evaluation import report
    from lsp_server.evaluation.harness import EvalConfig, plan, summarize
    from lsp_server.evaluation.harness import run as run_eval
    from lsp_server.evaluation.sampling import (
        NoSampler,
        Sampler,
        auto_temperature,
        load_engine_sampler,
    )
    from lsp_server.evaluation.store import RunStore, RunStoreError
    from lsp_server.evaluation.tasks import TaskDataError, load_humaneval, load_infilling

    def fail(message: str, code: int = 2) -> int:
        print(f"ghostpilot eval: {message}", file=sys.stderr)
        return code

    single_line = args.benchmark == "infilling" and args.infill == "single-line"
    name = "humaneval" if args.benchmark == "humaneval" else f"infilling-{args.infill}"
    n = args.n if args.n is not None else (10 if args.rank != "none" else 1)
    temperature = args.temperature if args.temperature is not None else auto_temperature(n)
    max_tokens = args.max_tokens or (48 if single_line else 384)
    try:
        ks = parse_ks(args.k)
        if args.limit is not None and args.limit < 1:
            raise ValueError("--limit must be at least 1")
        config = EvalConfig(
            benchmark=name, model=args.model or DEFAULT_MODEL, n=n, temperature=temperature,
            top_p=args.top_p, ks=ks, rank=args.rank, timeout_s=args.timeout,
            max_tokens=max_tokens, workers=args.workers, limit=args.limit,
            first_line_only=single_line)
        if args.benchmark == "humaneval":
            tasks = load_humaneval()
        else:
            tasks = load_infilling(args.data, args.infill)
    except (ValueError, TaskDataError) as error:
        return fail(str(error))
    out = args.out or Path("artifacts") / "eval" / _slug(
        f"{name}-{args.model or 'embedded'}-n{n}-t{temperature:g}-{args.rank}")
    store = RunStore(out)
    try:
        finished = store.check(config.to_json(), resume=args.resume)
    except RunStoreError as error:
        return fail(str(error))
    sampler: Sampler
    limited = tasks[: config.limit] if config.limit else tasks
    if finished and not plan(limited, config, finished):
        old = json.loads(store.config_path.read_text(encoding="utf-8"))
        sampler = NoSampler(str(old.get("model_name", config.model)))
    else:
        try:
            print(f"loading model {args.model or '(embedded)'} ...", file=sys.stderr)
            sampler = load_engine_sampler(args.model, max_tokens=max_tokens,
                                          n_threads=args.n_threads,
                                          n_gpu_layers=args.n_gpu_layers,
                                          mode="line" if single_line else None)
        except ModelUnavailable as error:
            return fail(str(error), 1)
    # A background job ignores SIGINT; let SIGTERM stop a run as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        records = run_eval(tasks, config, sampler, store, resume=args.resume,
                           progress=not args.no_progress)
    except RunStoreError as error:
        return fail(str(error))
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished samples are in {store.samples_path}; "
              "continue with --resume", file=sys.stderr)
        return 130
    run_config = json.loads(store.config_path.read_text(encoding="utf-8"))
    summary = summarize(records, config)
    paths = report.write(out, records, summary, config, run_config)
    sys.stdout.write(report.summary_table(summary, config, str(run_config.get("isolation"))))
    for label, path in paths.items():
        print(f"{label}: {path}", file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:120]
