"""``ghostpilot complete FILE:LINE:COL``: print the suggestion for one position.

LINE and COL are 1-based, as compilers and grep print them (COL counts characters).
It runs the same engine as the language server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lsp_server.backends.base import ModelUnavailable
from lsp_server.config import Settings, merge
from lsp_server.engine import CompletionEngine
from lsp_server.parsing.document import Document
from lsp_server.parsing.positions import PositionOutOfRange
from lsp_server.runtime import start_worker

# No keystroke follows a one-shot completion: it gets the whole block, not the editor's
# 500 ms first paint (whose rest the server writes in the background).
ONE_SHOT_BUDGET_MS = 10000


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "complete", help="print the suggestion at FILE:LINE:COL (1-based)"
    )
    parser.add_argument("location", help="FILE:LINE:COL, 1-based like compiler messages")
    parser.add_argument("--model", help="GGUF path or registry name (default: embedded)")
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--n-threads", type=int)
    parser.add_argument("--n-gpu-layers", type=int, help="layers to offload to a GPU (-1: all; needs a GPU build, see README)")
    parser.add_argument("--time-budget-ms", type=int, default=ONE_SHOT_BUDGET_MS,
                        help="stop once a complete line is out after this long (default "
                             f"{ONE_SHOT_BUDGET_MS}: a one-shot request waits for the whole "
                             "block; the editor's per-keystroke budget is the timeBudgetMs setting)")
    parser.add_argument("--explicit", action="store_true", help="complete even in strings")
    parser.add_argument("--json", action="store_true", help="print the suggestion and stats as JSON")
    parser.set_defaults(func=run)


def cli_settings(args: argparse.Namespace) -> tuple[Settings, list[str]]:
    """The settings of a ``complete`` run: the defaults with the options given."""
    raw = {"model": args.model, "maxTokens": args.max_tokens, "nThreads": args.n_threads,
           "timeBudgetMs": args.time_budget_ms, "nGpuLayers": args.n_gpu_layers}
    return merge(Settings(), {k: v for k, v in raw.items() if v is not None})


def parse_location(location: str) -> tuple[Path, int, int]:
    parts = location.rsplit(":", 2)
    if len(parts) != 3:
        raise ValueError(f"expected FILE:LINE:COL, got {location!r}")
    path, line, column = parts
    try:
        line_number, column_number = int(line), int(column)
    except ValueError:
        raise ValueError(f"LINE and COL must be numbers in {location!r}") from None
    if line_number < 1 or column_number < 1:
        raise ValueError("LINE and COL are 1-based")
    return Path(path), line_number, column_number


def run(args: argparse.Namespace) -> int:
    try:
        path, line, column = parse_location(args.location)
        text = path.read_text(encoding="utf-8")
    except (ValueError, OSError, UnicodeDecodeError) as error:
        print(f"ghostpilot complete: {error}", file=sys.stderr)
        return 2
    settings, problems = cli_settings(args)
    for problem in problems:
        print(f"ghostpilot complete: {problem}", file=sys.stderr)
    document = Document(uri=path.resolve().as_uri(), text=text, language_id="python")
    try:
        line_text = document.line(line - 1) if line - 1 < document.line_count else None
        if line_text is None:
            raise PositionOutOfRange(f"line {line} is past the end ({document.line_count} lines)")
        if column - 1 > len(line_text.rstrip("\r")):
            raise PositionOutOfRange(f"column {column} is past the end of line {line}")
        offset = document.index.char_starts[line - 1] + column - 1
    except PositionOutOfRange as error:
        print(f"ghostpilot complete: {error}", file=sys.stderr)
        return 2
    try:
        worker = start_worker(settings)
    except ModelUnavailable as error:
        print(f"ghostpilot complete: {error}", file=sys.stderr)
        return 1
    engine = CompletionEngine(worker, lambda: settings)
    try:
        suggestion = engine.complete_blocking(document, offset, explicit=args.explicit)
    finally:
        worker.shutdown(timeout=30)  # the model closed before the interpreter exits
    if args.json:
        result = suggestion.result if suggestion else None
        print(json.dumps({
            "text": suggestion.text if suggestion else "",
            "mode": suggestion.mode if suggestion else None,
            "latency_ms": round(suggestion.latency_s * 1000, 1) if suggestion else None,
            "prompt_tokens": result.prompt_tokens if result else None,
            "evaluated_tokens": result.evaluated_tokens if result else None,
            "generated_tokens": result.token_count if result else None,
        }, indent=2))
        return 0
    if suggestion is None:
        print("ghostpilot complete: no suggestion at this position", file=sys.stderr)
        return 1
    sys.stdout.write(suggestion.text + "\n")
    return 0
