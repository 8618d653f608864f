"""GPU against CPU, side by side, from the reports ``scripts/gpu-check.sh`` wrote.

Usage: python benchmarks/gpu_compare.py OUT   (the folder gpu-check.sh wrote)

Prints markdown: the greedy HumanEval completions compared task by task (the same text,
or the first line where they part), the throughput (prompt processing and decode) and the
typing-replay latency of the two runs. Exits 1 when a report is missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RUNS = (("cpu", "CPU (nGpuLayers 0)"), ("gpu", "GPU (nGpuLayers -1)"))


def completions(folder: Path) -> dict[str, str]:
    with open(folder / "samples.jsonl", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return {r["task_id"]: r["text"] for r in records if r.get("kind") == "greedy"}


def first_difference(a: str, b: str) -> str:
    for number, (left, right) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), 1):
        if left != right:
            return f"line {number}: `{left.strip()}` vs `{right.strip()}`"
    return f"one is longer ({len(a)} vs {len(b)} characters)"


def humaneval_table(out: Path) -> list[str]:
    cpu, gpu = completions(out / "humaneval_cpu"), completions(out / "humaneval_gpu")
    tasks = sorted(set(cpu) & set(gpu), key=lambda t: int(t.rsplit("/", 1)[-1]))
    same = [t for t in tasks if cpu[t] == gpu[t]]
    passed = {name: json.loads((out / f"humaneval_{name}" / "results.json").read_text())
              for name, _ in RUNS}  # fmt: skip
    lines = [f"HumanEval greedy, first {len(tasks)} tasks: **{len(same)}/{len(tasks)}** completions "
             "identical on GPU and CPU", ""]
    for name, label in RUNS:
        summary = passed[name].get("summary", {})
        lines.append(f"- {label}: greedy pass@1 {summary.get('greedy_pass_at_1', 'n/a')}, "
                     f"mean generation {summary.get('mean_gen_s', 0):.3f} s")
    for task in tasks:
        if cpu[task] != gpu[task]:
            lines.append(f"- {task} differs at {first_difference(cpu[task], gpu[task])}")
    return lines


def throughput_table(out: Path) -> list[str]:
    reports = {name: json.loads((out / f"throughput_{name}.json").read_text()) for name, _ in RUNS}
    lines = ["| throughput (tokens/s) | " + " | ".join(label for _, label in RUNS) + " | GPU/CPU |",
             "|---|---|---|---|"]
    for key, label in (("pp", "prompt processing"), ("tg", "decode")):
        values = [reports[name]["ours"][key]["tokens_per_s"] for name, _ in RUNS]
        tokens = reports["cpu"]["ours"][key]["tokens"]
        lines.append(f"| {label} ({key}{tokens}) | {values[0]} | {values[1]} | "
                     f"{values[1] / values[0]:.2f}x |")
    lines.append("")
    lines += [f"- {label}: {reports[name]['threads']} threads, {reports[name].get('offload', '')}"
              for name, label in RUNS]
    return lines


def latency_table(out: Path) -> list[str]:
    reports = {name: json.loads((out / f"latency_{name}.json").read_text()) for name, _ in RUNS}
    lines = [f"typing replay on {Path(reports['cpu']['input']).name} ({reports['cpu']['lines']} lines)",
             "", "| latency (ms) | " + " | ".join(f"{label} p50 / p95" for _, label in RUNS) + " |",
             "|---|---|---|"]  # fmt: skip
    for kind in ("single_line", "multi_line", "all"):
        cells = []
        for name, _ in RUNS:
            figures = reports[name]["ours"]["latency"].get(kind) or {}
            cells.append(f"{figures.get('p50_ms', 'n/a')} / {figures.get('p95_ms', 'n/a')} "
                         f"(n {figures.get('count', 0)})")
        lines.append(f"| {kind.replace('_', '-')} | " + " | ".join(cells) + " |")
    decode = [reports[name]["ours"].get("decode_tokens_per_s", {}).get("p50") for name, _ in RUNS]
    lines.append(f"| decode tokens/s (p50) | {decode[0]} | {decode[1]} |")
    steps: list[Any] = [reports[name]["ours"].get("server_side_ms", {}) for name, _ in RUNS]
    lines.append(f"| prompt eval ms (p50) | {steps[0].get('prompt_eval')} | {steps[1].get('prompt_eval')} |")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    try:
        sections = [humaneval_table(out), throughput_table(out), latency_table(out)]
    except (OSError, KeyError, ValueError) as error:
        print(f"gpu_compare: a report is missing or incomplete: {error}", file=sys.stderr)
        return 1
    print("\n\n".join("\n".join(section) for section in sections))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
