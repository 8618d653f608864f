"""``ghostpilot eval docstring``: Codex-D docstring generation measured on HumanEval.

Structural accuracy of the generated docstrings, and back-translation pass@1 (the body
written from the generated docstring vs from the original one). Prints a table, writes
``results.json`` (and ``records.jsonl`` as it goes), shows a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path


def add_subparser(benchmarks: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``docstring`` under ``ghostpilot eval``."""
    parser = benchmarks.add_parser(
        "docstring",
        help="Codex-D: generated docstrings on HumanEval (structure, back-translation)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--style", choices=("google", "numpy", "sphinx"), default="google")
    parser.add_argument("--limit", type=int, help="only the first N tasks")
    parser.add_argument("--model", help="GGUF path or registry name (default: embedded)")
    parser.add_argument("--n-threads", type=int, help="model threads")
    parser.add_argument("--max-tokens", type=int, default=384, help="tokens per function body")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per test run")
    parser.add_argument(
        "--signature-baseline",
        action="store_true",
        help="also pass@1 of bodies written from the signature alone",
    )
    parser.add_argument("--out", type=Path, help="output directory (default artifacts/eval/...)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsp_server.backends.base import ModelUnavailable
    from lsp_server.evaluation import docstring_eval as de
    from lsp_server.evaluation.progress import Progress
    from lsp_server.evaluation.sampling import load_engine_sampler
    from lsp_server.evaluation.tasks import TaskDataError, load_humaneval
    from lsp_server.runtime import prompt_budget

    def fail(message: str, code: int = 2) -> int:
        print(f"ghostpilot eval docstring: {message}", file=sys.stderr)
        return code

    if args.limit is not None and args.limit < 1:
        return fail("--limit must be at least 1")
    try:
        tasks = load_humaneval()
    except TaskDataError as error:
        return fail(str(error))
    tasks = tasks[: args.limit] if args.limit else tasks
    try:
        sampler = load_engine_sampler(
            args.model, max_tokens=args.max_tokens, n_threads=args.n_threads
        )
    except ModelUnavailable as error:
        return fail(str(error), 1)
    worker = sampler.engine.worker

    def model(request):  # type: ignore[no-untyped-def]
        return worker.generate_blocking(request)

    settings = de.EvalSettings(
        style=args.style, timeout_s=args.timeout, signature_baseline=args.signature_baseline,
        budget=prompt_budget(worker, sampler.engine.settings().n_ctx),
    )
    out = (
        args.out
        or Path("artifacts") / "eval" / f"docstring-{args.model or 'embedded'}-{args.style}"
    )
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "benchmark": "humaneval",
        "model": sampler.model_name,
        "style": args.style,
        "max_tokens": args.max_tokens,
        "limit": args.limit,
        "signature_baseline": args.signature_baseline,
        "decoding": "greedy",
        "command": " ".join(sys.argv),
    }
    progress = Progress(len(tasks), "docstring", enabled=not args.no_progress)
    records = []
    with open(out / "records.jsonl", "w", encoding="utf-8") as log:
        for task in tasks:
            record = de.evaluate_task(task, model, sampler.greedy, settings)
            records.append(record)
            log.write(json.dumps(asdict(record)) + "\n")
            log.flush()
            generated = sum(r.passed_generated for r in records)
            original = sum(r.passed_original for r in records)
            progress.advance(note=f"pass gen {generated} / orig {original}")
    summary = de.summarize(records)
    path = de.write_results(out, config, records, summary)
    print(de.format_table(summary))
    print(f"results: {path}", file=sys.stderr)
    return 0 if summary["errors"] < len(records) else 1
