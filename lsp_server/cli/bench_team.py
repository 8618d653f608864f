"""``ghostpilot bench team``: N editors typing at once against one shared llama-server
(``--parallel N``), with cancellation (``ghostpilot serve``) and with a naive client that
waits every request out; see :mod:`lsp_server.evaluation.team`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(kinds: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = kinds.add_parser("team", help="N editors against one shared engine (llama-server)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--editors", default="1,2,4,8", help="the N to run, e.g. 1,2,4,8")
    parser.add_argument("--keystrokes", type=int, default=120, help="keystrokes per editor")
    parser.add_argument("--keystroke-ms", type=float, default=150.0,
                        help="typing pace: one keystroke every this many ms (default 150)")
    parser.add_argument("--model", help="GGUF path or registry name (default: embedded)")
    parser.add_argument("--threads", type=int, help="engine threads (default: all cores)")
    parser.add_argument("--ctx-per-slot", type=int, default=2048, help="context per slot")
    parser.add_argument("--llama-bin", type=Path, help="directory with llama-server")
    parser.add_argument("--local", choices=("on", "off"), default="on",
                        help="also one editor with the in-process model (the remote overhead)")
    parser.add_argument("--out", type=Path, help="write the report (JSON) here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lsp_server.backends.registry import ModelNotFound, resolve
    from lsp_server.config import default_threads
    from lsp_server.evaluation import team
    from lsp_server.evaluation.llama_peer import BUILD_SCRIPT, find_tool

    try:
        sizes = sorted({int(n) for n in args.editors.split(",") if n.strip()})
        if not sizes or min(sizes) < 1:
            raise ValueError("--editors needs positive counts, e.g. 1,2,4,8")
        model = str(resolve(args.model or "gemma3-270m").path)
    except (ValueError, ModelNotFound) as error:
        print(f"ghostpilot bench team: {error}", file=sys.stderr)
        return 2
    exe = find_tool("llama-server", args.llama_bin)
    if exe is None:
        print(f"ghostpilot bench team: llama-server not found; build it with {BUILD_SCRIPT} "
              "(or pass --llama-bin)", file=sys.stderr)  # fmt: skip
        return 2
    settings = {"model": args.model} if args.model else {}
    try:
        report = team.run(exe, model, sizes=sizes, keystrokes=args.keystrokes,
                          keystroke_ms=args.keystroke_ms, threads=args.threads or default_threads(),
                          ctx_per_slot=args.ctx_per_slot, settings=settings,
                          local=args.local == "on",
                          log=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
    except (RuntimeError, OSError, ValueError) as error:
        print(f"ghostpilot bench team: {error}", file=sys.stderr)
        return 1
    report["command"] = "ghostpilot bench team " + " ".join(sys.argv[3:])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(team.table(report))
    return 0
