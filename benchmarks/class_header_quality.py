"""Does a brief class header cost suggestion quality? Class-method lines of the standard
library (modules not used by the latency replays), completed with the whole class
header and with the brief one that an editor's first requests in a new class get
(``PromptContext.brief_header``, prompts/held.py).

For each task a line in the body of a method of a class with 8 or more methods is blanked
after its indentation; the engine (one-shot, greedy, line mode, the embedded model by
default) completes it. Prints, per variant: exact matches, the mean edit similarity
(difflib ratio) of the suggested line to the real one, the mean log-probability per token
that the model gives the real line (teacher-forced after the same prompt), and the mean
prompt length.

    .venv/bin/python benchmarks/class_header_quality.py --per-module 8
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import random
import statistics
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from lsp_server.backends.base import CancelToken
from lsp_server.backends.llama import LlamaBackend
from lsp_server.backends.registry import resolve
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.engine import CompletionEngine
from lsp_server.parsing import syntax
from lsp_server.parsing.document import Document

# Held out: ftplib, argparse, tkinter and textwrap are the latency replays' files.
MODULES = (
    "logging/__init__.py", "imaplib.py", "smtplib.py", "configparser.py", "http/client.py",
    "zipfile.py", "tarfile.py", "subprocess.py", "unittest/case.py", "asyncio/base_events.py",
    "email/message.py", "pdb.py", "difflib.py", "mailbox.py", "nntplib.py", "threading.py",
    "socketserver.py", "xml/dom/minidom.py", "optparse.py", "doctest.py", "pickle.py",
    "turtle.py", "pathlib.py", "wave.py", "aifc.py", "calendar.py", "cmd.py", "sched.py",
    "selectors.py", "shlex.py", "statistics.py", "string.py", "tempfile.py", "bdb.py",
)


def method_lines(text: str) -> list[int]:
    """Lines that start a statement among the first six of a method body (docstrings and
    comments left out), in classes of 8 or more methods."""
    tree = syntax.parse(text.encode("utf-8"))
    found: list[int] = []
    for node in tree.root_node.children:
        if node.type == "decorated_definition":
            node = node.child_by_field_name("definition") or node
        if node.type != "class_definition":
            continue
        body = node.child_by_field_name("body")
        methods = [n for n in body.named_children if n.type in ("function_definition", "decorated_definition")]
        if len(methods) < 8:
            continue
        for method in methods:
            function = method.child_by_field_name("definition") if method.type == "decorated_definition" else method
            statements = [
                s for s in function.child_by_field_name("body").named_children
                if s.type != "comment" and not (s.type == "expression_statement" and s.named_children
                                                and s.named_children[0].type == "string")
            ]
            found.extend(s.start_point[0] for s in statements[:6])
    return found


def tasks(per_module: int, seed: int) -> list[tuple[str, int, str, str, int]]:
    rng = random.Random(seed)
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for name in MODULES:
        path = root / name
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        candidates = method_lines(text)
        for line in rng.sample(candidates, min(per_module, len(candidates))):
            original = lines[line]
            indent = original[: len(original) - len(original.lstrip())]
            if len(original.strip()) < 4:
                continue
            blanked = "\n".join([*lines[:line], indent, *lines[line + 1:]])
            cursor = sum(len(piece) + 1 for piece in lines[:line]) + len(indent)
            out.append((name, line, original.strip(), blanked, cursor))
    return sorted(out, key=lambda task: (task[0], task[1]))


def teacher_forced(backend: LlamaBackend, token: CancelToken, prompt: list[int], target: list[int]) -> float:
    """Mean log-probability per token of ``target`` after ``prompt``."""
    backend._evaluate(list(prompt), token)
    total = 0.0
    for wanted in target:
        logits = backend._logits().astype(np.float64)
        top = logits.max()
        total += logits[wanted] - top - np.log(np.exp(logits - top).sum())
        backend.llm.eval([wanted])
        backend._cached.append(wanted)
    return total / len(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-module", type=int, default=8)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write every task's result (JSON)")
    args = parser.parse_args()
    settings = Settings(time_budget_ms=20000, record_prompts=True,
                        **({"model": args.model} if args.model else {}))
    resolved = resolve(settings.model)
    backend = LlamaBackend(str(resolved.path), name=resolved.name, n_ctx=settings.n_ctx,
                           n_threads=settings.n_threads, fim_template="auto")
    worker = ModelWorker()
    worker.load(lambda: backend, resolved.name)
    worker.wait_loaded()
    engine = CompletionEngine(worker, lambda: settings)
    whole_settled = CompletionEngine._settled
    chosen = tasks(args.per_module, args.seed)
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for variant in ("whole", "brief"):
            if variant == "brief":  # what hold() gives an editor's request in a new class
                CompletionEngine._settled = lambda self, snapshot, context: dataclasses.replace(  # type: ignore[method-assign]
                    whole_settled(self, snapshot, context), brief_header=True)
            rows = results[variant] = []
            for name, line, wanted, text, cursor in chosen:
                document = Document(uri=f"file:///{name}", text=text)
                suggestion = engine.complete_blocking(document, cursor, overrides={"mode": "line", "max_tokens": 48})
                got = suggestion.text.split("\n")[0].strip() if suggestion else ""
                record = engine.last_request
                prompt = list(record.prompt_ids or ()) if record else []
                target = backend.tokenize(wanted + "\n")
                logprob = worker.run_blocking(
                    lambda b, token, p=prompt, t=target: teacher_forced(b, token, p, t)) if prompt else float("nan")
                rows.append({"module": name, "line": line, "want": wanted, "got": got, "exact": got == wanted,
                             "similarity": difflib.SequenceMatcher(None, got, wanted).ratio(),
                             "logprob": logprob, "prompt_tokens": len(prompt)})
    finally:
        CompletionEngine._settled = whole_settled  # type: ignore[method-assign]
        worker.shutdown(timeout=30)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    whole, brief = results["whole"], results["brief"]
    print(f"{len(whole)} class-method lines from {len({r['module'] for r in whole})} modules, model {resolved.name}")
    print("| | exact | edit similarity | log-prob per token | prompt tokens |")
    print("|---|---|---|---|---|")
    for variant, rows in results.items():
        print(f"| {variant} header | {sum(r['exact'] for r in rows)} | {statistics.mean(r['similarity'] for r in rows):.3f} "
              f"| {statistics.mean(r['logprob'] for r in rows):.3f} | {statistics.mean(r['prompt_tokens'] for r in rows):.0f} |")
    differences = [w["logprob"] - b["logprob"] for w, b in zip(whole, brief)]
    spread = statistics.pstdev(differences) / len(differences) ** 0.5
    print(f"log-prob per token, whole minus brief: {statistics.mean(differences):+.4f} "
          f"(standard error {spread:.4f}); whole higher on {sum(d > 0 for d in differences)} of {len(differences)}")
    print(f"same suggested line: {sum(w['got'] == b['got'] for w, b in zip(whole, brief))} of {len(whole)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
