"""``ghostpilot bench``: how fast the product is on this machine.

- ``ghostpilot bench latency``: replay typing into a real Python file through
  ``ghostpilot serve`` over stdio; keystroke-to-suggestion p50/p95/max for single- and
  multi-line suggestions, prompt tokens evaluated vs reused, decode tokens/s and server
  RSS; then the same prompts through llama.cpp's ``llama-server`` (cache_prompt on).
- ``ghostpilot bench throughput``: prompt and decode tokens/s through our backend as a
  fraction of ``llama-bench`` on the same model and threads.

The llama.cpp tools come from ``scripts/build-llama-server.sh`` (cached under
``~/.cache/ghostpilot``); without them the peer columns are left out, saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import pkgutil
import statistics
import sys
import sysconfig
from pathlib import Path
from typing import Any

from lsp_server.cli import positive_int


def _subcommand_modules() -> list[str]:
    """Benches in their own modules, ``lsp_server/cli/bench_<name>.py``: each has
    ``add_parser(kinds)`` and registers its own sub-command."""
    return sorted(
        info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if info.name.startswith("bench_")
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "bench", help="latency (LSP typing replay vs llama-server) and throughput benchmarks",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="bench", metavar="BENCH")
    latency = kinds.add_parser("latency", help="keystroke-to-suggestion latency over LSP")
    latency.add_argument("--file", type=Path, action="append", default=None, nargs="+",
                         help="Python file(s) to retype, one replay each (repeat the option "
                              "or list several; default: the stdlib's textwrap.py)")
    latency.add_argument("--pattern", choices=("typing", "jump"), default="typing",
                         help="typing: retype whole function bodies one after another; jump: "
                              "round-robin among functions, two words and two requests a visit")
    latency.add_argument("--functions", type=positive_int, default=None,
                         help="function bodies to retype (default 6 typing, 5 jump)")
    latency.add_argument("--visits", type=positive_int, default=4,
                         help="jump pattern: visits to each function (default 4)")
    latency.add_argument("--keystrokes", type=positive_int, default=None, help="stop after N keystrokes")
    latency.add_argument("--keystroke-ms", type=float, default=0.0,
                         help="pause between mid-word keystrokes (default 0)")
    latency.add_argument("--dwell-ms", type=float, default=0.0,
                         help="jump pattern: pause between the cursor's arrival at a function "
                              "(a code action request there, as VS Code sends at each cursor "
                              "move) and the first keystroke (default 0)")
    _model_args(latency)
    latency.add_argument("--peer", choices=("auto", "on", "off"), default="auto",
                         help="compare with llama-server: auto = when it is built")
    latency.add_argument("--rounds", type=positive_int, default=1,
                         help="replay each file (and llama-server after it) N times; with N > 1 "
                              "each ratio is printed per round and as the median")
    latency.add_argument("--out", type=Path, help="write the full report (JSON) here")
    latency.add_argument("--busy", type=int, default=0, metavar="N",
                         help="N busy-loop processes compete for the cores during both "
                              "replays (ours and llama-server's); default 0")
    latency.add_argument("--profile", type=Path, default=None,
                         help="sample the server with py-spy during the replay; raw profile "
                              "here, its top frames printed (slows the server: not for figures)")
    latency.set_defaults(func=run_latency)
    throughput = kinds.add_parser("throughput", help="tokens/s vs llama-bench")
    _model_args(throughput)
    throughput.add_argument("--prompt-tokens", type=positive_int, default=512)
    throughput.add_argument("--gen-tokens", type=positive_int, default=128)
    throughput.add_argument("--repetitions", type=positive_int, default=3)
    throughput.add_argument("--peer", choices=("auto", "on", "off"), default="auto",
                            help="run llama-bench: auto = when it is built")
    throughput.add_argument("--out", type=Path, help="write the report (JSON) here")
    throughput.set_defaults(func=run_throughput)
    for module in _subcommand_modules():  # benches that live in their own modules
        importlib.import_module(f"lsp_server.cli.{module}").add_parser(kinds)
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="GGUF path or registry name (default: embedded)")
    parser.add_argument("--threads", type=int, help="model threads (default: all cores)")
    parser.add_argument("--llama-bin", type=Path, help="directory with llama-server/llama-bench")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a server setting for this run (camelCase, JSON value), e.g. "
                             "--set timeBudgetMs=1500 --set startEarly=false; repeatable")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from lsp_server.config import Settings, merge

    raw: dict[str, Any] = {}
    if args.model:
        raw["model"] = args.model
    if args.threads:
        raw["nThreads"] = args.threads
    for item in getattr(args, "overrides", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            raw[key] = json.loads(value)
        except json.JSONDecodeError:
            raw[key] = value  # a bare string
    settings, problems = merge(Settings(), raw)
    if problems:
        raise ValueError("; ".join(problems))
    return settings, raw


def _peer_tool(args: argparse.Namespace, name: str) -> Path | None:
    from lsp_server.evaluation.llama_peer import BUILD_SCRIPT, find_tool

    if args.peer == "off":
        return None
    tool = find_tool(name, args.llama_bin)
    if tool is None:
        message = f"{name} not found; build it with {BUILD_SCRIPT} (or pass --llama-bin)"
        if args.peer == "on":
            raise FileNotFoundError(message)
        _log(f"peer skipped: {message}")
    return tool


PEER_OPTIONS = ("--swa-full", "--cache-reuse", "256", "--cache-ram", "256")


def run_latency(args: argparse.Namespace) -> int:
    paths = [path for group in (args.file or []) for path in group] or [
        Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"]
    reports = []
    for number in range(args.rounds):
        for path in paths:
            code, report = _latency_one(args, path)
            if code:
                return code
            report["round"] = number + 1
            reports.append(report)
    if args.rounds > 1:
        sys.stdout.write("\n" + rounds_table(reports) + "\n")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        whole = reports[0] if len(reports) == 1 else {"files": reports}
        args.out.write_text(json.dumps(whole, indent=1) + "\n", encoding="utf-8")
    if args.profile:
        from lsp_server.evaluation import profiling

        raw_profile = args.profile.read_text(encoding="utf-8", errors="replace")
        sys.stdout.write(f"\nserver profile during the replay ({args.profile}):\n")
        sys.stdout.write(profiling.table(raw_profile, top=25))
    return 0


def _latency_one(args: argparse.Namespace, path: Path) -> tuple[int, dict[str, Any]]:
    from lsp_server.evaluation import latency, typing_replay
    from lsp_server.evaluation.llama_peer import LlamaServer

    try:
        settings, raw = _settings(args)
        text = path.read_text(encoding="utf-8")
        if args.pattern == "jump":
            edits = typing_replay.jump_session(text, functions=args.functions or 5,
                                               visits=args.visits)
        else:
            edits = typing_replay.session(text, functions=args.functions or 6,
                                          max_keystrokes=args.keystrokes)
        server_exe = _peer_tool(args, "llama-server")
    except (OSError, UnicodeDecodeError, ValueError, SyntaxError) as error:
        print(f"ghostpilot bench: {error}", file=sys.stderr)
        return 2, {}
    _log(f"{args.pattern} pattern: replaying {sum(e.kind == 'type' for e in edits)} keystrokes, "
         f"{sum(e.request for e in edits)} requests on {path} ({len(text.splitlines())} lines)")
    try:
        with latency.competing_load(args.busy):
            replay = latency.replay_ours(path, edits, settings=raw,
                                         keystroke_s=args.keystroke_ms / 1000, log=_log,
                                         profile=args.profile, dwell_s=args.dwell_ms / 1000)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"ghostpilot bench: {error}", file=sys.stderr)
        return 1, {}
    report: dict[str, Any] = {
        "input": str(path), "lines": len(text.splitlines()), "pattern": args.pattern,
        "debounce": latency.DEBOUNCE, "threads": settings.n_threads,
        "model": settings.model, "busy_processes": args.busy, "keystroke_ms": args.keystroke_ms,
        "dwell_ms": args.dwell_ms, "ours": latency.summarize(replay),
    }
    if server_exe is not None:
        generated = [i for i, r in enumerate(replay.records) if r.model_ran]
        prompts: list[list[int] | None] = [replay.records[i].prompt_ids for i in generated]
        if any(p is None for p in prompts):  # a server that does not report them
            _log("building the same prompts through the engine for llama-server ...")
            prompts = latency.record_prompts([replay.snapshots[i] for i in generated],
                                             settings=settings, uri=path.resolve().as_uri())
        from lsp_server.backends.registry import resolve

        resolved = resolve(settings.model)
        lora = ["--lora", str(resolved.adapter)] if resolved.adapter else []
        peer = LlamaServer(server_exe, str(resolved.path), threads=settings.n_threads,
                           n_ctx=settings.n_ctx, extra=[*PEER_OPTIONS, *lora])
        try:
            peer.wait_ready()
            _log(f"llama-server: {len(generated)} requests ...")
            with latency.competing_load(args.busy):
                if prompts and prompts[0]:
                    peer.complete(prompts[0][:8], 1)  # warm-up, like ours
                for index, tokens in zip(generated, prompts):
                    record = replay.records[index]
                    if not tokens:
                        continue
                    reply = peer.complete(tokens, max(1, record.generated_tokens))
                    record.peer = {**reply.__dict__, "tokens": tokens}
            report["llama_server"] = latency.peer_summary(replay.records)
            report["llama_server"]["rss_mb"] = peer.rss_mb()
            report["llama_server"]["argv"] = peer.argv
            report["llama_server"]["options"] = [*PEER_OPTIONS, *lora]
        finally:
            peer.close()
    report["requests"] = [latency.record_json(r) for r in replay.records]
    sys.stdout.write(latency_table(report) + "\n")
    return 0, report


def _figure(report: dict[str, Any], *path: str) -> float | None:
    """The number at ``path`` in a report, or None where it has none."""
    value: Any = report
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


# What --rounds lists per round: (label, path in a file's report, digits).
ROUND_FIGURES: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("ours single-line p50 ms", ("ours", "latency", "single_line", "p50_ms"), 1),
    ("ours single-line p95 ms", ("ours", "latency", "single_line", "p95_ms"), 1),
    ("vs llama-server, single-line p50", ("llama_server", "single_line", "ratio_p50"), 2),
    ("vs llama-server, single-line p95", ("llama_server", "single_line", "ratio_p95"), 2),
    ("everything but decoding p50 ms, ours", ("llama_server", "not_decode", "ours", "p50_ms"), 1),
    ("everything but decoding p50 ms, llama-server",
     ("llama_server", "not_decode", "llama_server", "p50_ms"), 1),
    ("everything but decoding, ratio", ("llama_server", "not_decode", "ratio_p50"), 2),
    ("ours first visit p95 ms", ("ours", "phases", "first", "latency", "p95_ms"), 1),
    ("ours return p95 ms", ("ours", "phases", "return", "latency", "p95_ms"), 1),
    ("vs llama-server, first visit p95", ("llama_server", "first", "ratio_p95"), 2),
    ("vs llama-server, return p95", ("llama_server", "return", "ratio_p95"), 2),
)


def rounds_table(reports: list[dict[str, Any]]) -> str:
    """Each file's figures over the rounds of ``--rounds``, each round's then the median.
    Ours and llama-server run one after the other and the machine's speed moves between
    them, so one round's ratio can be off by several percent."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        by_file.setdefault(report["input"], []).append(report)
    lines = ["| file | figure | per round | median |", "|---|---|---|---|"]
    for name, runs in by_file.items():
        for label, path, digits in ROUND_FIGURES:
            values = [_figure(run, *path) for run in runs]
            found = [value for value in values if value is not None]
            if not found:
                continue
            shown = ", ".join("–" if value is None else f"{value:.{digits}f}" for value in values)
            lines.append(f"| {name} | {label} | {shown} | {statistics.median(found):.{digits}f} |")
    return "\n".join(lines)


def latency_table(report: dict[str, Any]) -> str:
    ours = report["ours"]
    lines = [f"input: {report['input']} ({report.get('lines', '?')} lines)  pattern: "
             f"{report.get('pattern', 'typing')}  threads: {report['threads']}  model: "
             f"{report['model']}  competing busy processes: {report.get('busy_processes', 0)}  "
             f"keystroke pause: {report.get('keystroke_ms', 0):g} ms  dwell: {report.get('dwell_ms', 0):g} ms",
             f"debounce: {report['debounce']}",
             f"keystrokes {ours['keystrokes']}, requests {ours['requests']}, suggestions "
             f"{ours['suggestions']} ({ours['cached_suggestions']} from the type-through cache)",
             "", "| latency (ms) | n | p50 | p95 | max |", "|---|---|---|---|---|"]
    for name in ("single_line", "multi_line", "no_suggestion", "all"):
        stats = ours["latency"][name]
        if stats.get("count"):
            lines.append(f"| ours {name.replace('_', '-')} | {stats['count']} | {stats['p50_ms']} |"
                         f" {stats['p95_ms']} | {stats['max_ms']} |")
    nothing = ours.get("nothing_generated") or {}
    if nothing.get("count"):
        lines.append(f"| ours, model generated nothing | {nothing['count']} | {nothing['p50_ms']} |"
                     f" {nothing['p95_ms']} | {nothing['max_ms']} |")
    phases = ours.get("phases") or {}
    if phases:
        lines += ["", "| jump pattern (ms) | n | p50 | p95 | max | prompt tokens evaluated "
                      "(p50 / mean / total) |", "|---|---|---|---|---|---|"]
        for phase, entry in phases.items():
            stats, evaluated = entry["latency"], entry["evaluated_tokens"]
            lines.append(f"| ours {phase} | {stats['count']} | {stats['p50_ms']} | "
                         f"{stats['p95_ms']} | {stats['max_ms']} | {evaluated.get('p50')} / "
                         f"{evaluated.get('mean')} / {evaluated.get('total')} |")
    tokens = ours["prompt_tokens"]
    lines += ["",
              f"prompt tokens per generating request: mean {tokens['mean_prompt_tokens']}, "
              f"evaluated {tokens['evaluated_total']} / {tokens['prompt_total']} "
              f"(reused {tokens['reused_total']}); evaluated share p50 "
              f"{tokens['evaluated_share_p50']}, mean {tokens['evaluated_share_mean']}",
              f"decode tokens/s (p50): {ours['decode_tokens_per_s']['p50']}",
              f"server RSS: {ours['server_rss_mb']['end']} MB (peak {ours['server_rss_mb']['peak']} MB)"]
    if ours.get("server_side_ms"):
        side = ours["server_side_ms"]
        lines.append("server steps, p50 ms where the model ran: " + ", ".join(
            f"{name} {value}" for name, value in side.items()))
    if ours.get("kv_cache"):
        lines.append("saved KV states: " + ", ".join(f"{k} {v}" for k, v in ours["kv_cache"].items()))
    if ours.get("threads"):
        lines.append("threads at the end: " + ", ".join(f"{k} {v}" for k, v in ours["threads"].items()))
    peer = report.get("llama_server")
    if peer:
        lines += ["", f"same prompts, llama-server {' '.join(peer.get('options', []))} with "
                      f"cache_prompt ({peer['paired_requests']} requests, same number of "
                      "generated tokens; prompts of another length than the server's: "
                      f"{peer.get('prompt_length_differs', '?')}):",
                  "| | n | ours p50 | llama-server p50 | ratio | ours p95 | llama-server p95 | ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        for name in ("single_line", "multi_line", "all", "first", "return", "warm"):
            entry = peer.get(name)
            if not entry:
                continue
            o, t = entry["ours"], entry["llama_server"]
            if o.get("count"):
                lines.append(f"| {name.replace('_', '-')} | {o['count']} | {o['p50_ms']} | "
                             f"{t['p50_ms']} | {entry.get('ratio_p50')} | {o['p95_ms']} | "
                             f"{t['p95_ms']} | {entry.get('ratio_p95')} |")
        nd = peer.get("not_decode") or {}
        if nd.get("ours", {}).get("count"):
            lines.append(f"everything but decoding, p50: ours {nd['ours']['p50_ms']} ms, "
                         f"llama-server {nd['llama_server']['p50_ms']} ms "
                         f"(ratio {nd.get('ratio_p50')}); p95 {nd['ours']['p95_ms']} vs "
                         f"{nd['llama_server']['p95_ms']}")
        lines.append(f"llama-server prompt tokens evaluated: {peer['peer_prompt_tokens_evaluated']}"
                     f" / {peer['peer_prompt_tokens_total']}; RSS {peer.get('rss_mb')} MB")
    return "\n".join(lines) + "\n"


def run_throughput(args: argparse.Namespace) -> int:
    from lsp_server.backends.base import ModelUnavailable
    from lsp_server.backends.registry import resolve
    from lsp_server.evaluation import throughput
    from lsp_server.evaluation.llama_peer import llama_bench
    from lsp_server.runtime import start_worker

    try:
        settings, _ = _settings(args)
        # The engine's rates at the thread count llama-bench runs with: no governor.
        settings = dataclasses.replace(settings, adaptive_threads=False)
        bench_exe = _peer_tool(args, "llama-bench")
        model_path = str(resolve(settings.model).path)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"ghostpilot bench: {error}", file=sys.stderr)
        return 2
    try:
        worker = start_worker(settings)
    except ModelUnavailable as error:
        print(f"ghostpilot bench: {error}", file=sys.stderr)
        return 1
    _log(f"our backend: pp{args.prompt_tokens} / tg{args.gen_tokens}, {settings.n_threads} threads")
    ours = throughput.measure(worker, prompt_tokens=args.prompt_tokens,
                              gen_tokens=args.gen_tokens, repetitions=args.repetitions, log=_log)
    offload = worker.info.offload if worker.info is not None else ""
    worker.shutdown(timeout=30)
    report: dict[str, Any] = {"model": settings.model, "threads": settings.n_threads,
                              "offload": offload, "ours": ours}
    if bench_exe is not None:
        _log("llama-bench ...")
        report["llama_bench"] = llama_bench(bench_exe, model_path, threads=settings.n_threads,
                                            prompt_tokens=args.prompt_tokens,
                                            gen_tokens=args.gen_tokens,
                                            repetitions=args.repetitions)
        report["fraction_of_llama_bench"] = throughput.fractions(ours, report["llama_bench"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(throughput_table(report))
    return 0


def throughput_table(report: dict[str, Any]) -> str:
    ours = report["ours"]
    bench = report.get("llama_bench") or {}
    share = report.get("fraction_of_llama_bench") or {}
    where = f"  ({report['offload']})" if report.get("offload") else ""
    lines = [f"model: {report['model']}  threads: {report['threads']}{where}", "",
             "| | ours (tokens/s) | llama-bench (tokens/s) | fraction |", "|---|---|---|---|"]
    for key, label in (("pp", "prompt processing"), ("tg", "decode")):
        theirs = (bench.get(key) or {}).get("tokens_per_s")
        lines.append(f"| {label} ({key}{ours[key]['tokens']}) | {ours[key]['tokens_per_s']} | "
                     f"{theirs if theirs is not None else 'n/a'} | {share.get(key, 'n/a')} |")
    return "\n".join(lines) + "\n"
