"""What a run leaves behind: ``results.json`` (every sample and its result),
``summary.md`` (the table printed at the end) and ``passk.png`` (pass@k against k)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsp_server.evaluation.harness import EvalConfig


def summary_table(summary: dict[str, Any], config: EvalConfig, isolation: str) -> str:
    """The summary as a Markdown table (also readable on a terminal)."""
    rows: list[tuple[str, str]] = [
        ("benchmark", config.benchmark),
        ("model", config.model),
        ("tasks", str(summary.get("tasks", 0))),
        ("samples checked", str(summary.get("samples", 0))),
        ("temperature / top-p", f"{config.temperature:g} / {config.top_p:g}"),
        ("sandbox isolation", isolation),
    ]
    if "greedy_pass_at_1" in summary:
        rows.append(("greedy pass@1", _pct(summary["greedy_pass_at_1"])))
    for k, value in summary.get("pass_at_k", {}).items():
        if config.sample_count:
            rows.append((f"pass@{k} (n={config.n}, unbiased)", _pct(value)))
    for name, value in summary.get("ranked_pass_at_1", {}).items():
        rows.append((f"pass@1, pick by {name}", _pct(value)))
    if "tasks_with_examples" in summary:
        rows.append(("tasks with docstring examples", str(summary["tasks_with_examples"])))
    if summary.get("status_counts"):
        rows.append(("sample outcomes", ", ".join(f"{k} {v}" for k, v in
                                                  summary["status_counts"].items())))
    if "mean_tokens" in summary:
        rows.append(("mean tokens / generation time",
                     f"{summary['mean_tokens']:.1f} / {summary['mean_gen_s']:.2f} s"))
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def _sample_key(record: dict[str, Any]) -> tuple[bool, int]:
    return record["kind"] != "greedy", int(record["index"])


def _task_item_key(item: tuple[str, list[dict[str, Any]]]) -> Any:
    return _task_key(item[0])


def results_json(records: Sequence[dict[str, Any]], summary: dict[str, Any],
                 config: dict[str, Any]) -> dict[str, Any]:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_task[record["task_id"]].append(record)
    tasks: list[dict[str, Any]] = [{"task_id": task_id, "samples": sorted(samples, key=_sample_key)}
             for task_id, samples in sorted(by_task.items(), key=_task_item_key)]
    return {"config": config, "summary": summary, "tasks": tasks}


def plot_pass_at_k(summary: dict[str, Any], config: EvalConfig, path: Path) -> Path | None:
    """pass@k against k (log scale), with the single-pick pass@1 figures as markers.
    None when there is nothing to plot or matplotlib is missing (``pip install
    'ghostpilot[eval]'``)."""
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = {int(k): v for k, v in (summary.get("pass_at_k_curve") or {}).items()}
    points = {int(k): v for k, v in (summary.get("pass_at_k") or {}).items()}
    picks = dict(summary.get("ranked_pass_at_1") or {})
    if "greedy_pass_at_1" in summary:
        picks = {"greedy": summary["greedy_pass_at_1"], **picks}
    if not curve and not points and not picks:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if curve:
        ks = sorted(curve)
        ax.plot(ks, [100 * curve[k] for k in ks], "-", color="#1f77b4",
                label=f"pass@k (unbiased, n={config.n}, T={config.temperature:g})")
    if points and config.sample_count:
        ks = sorted(points)
        ax.plot(ks, [100 * points[k] for k in ks], "o", color="#1f77b4")
        for k in ks:
            ax.annotate(f"{100 * points[k]:.1f}%", (k, 100 * points[k]),
                        textcoords="offset points", xytext=(4, -12), fontsize=8)
    markers = ["s", "^", "D", "v", "P", "X"]
    for (name, value), marker in zip(picks.items(), markers):
        ax.plot([1], [100 * value], marker, linestyle="none", label=f"pass@1, {name}: "
                f"{100 * value:.1f}%")
    ax.set_xscale("log")
    ax.set_xlabel("k (samples per task)")
    ax.set_ylabel("tasks solved (%)")
    ax.set_title(f"{config.benchmark}: {config.model}")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="lower right")  # the k=1 points sit at the upper left
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write(directory: Path, records: Sequence[dict[str, Any]], summary: dict[str, Any],
          config: EvalConfig, run_config: dict[str, Any]) -> dict[str, Path]:
    directory = Path(directory)
    isolation = str(run_config.get("isolation", "?"))
    paths = {"results": directory / "results.json", "summary": directory / "summary.md"}
    paths["results"].write_text(json.dumps(results_json(records, summary, run_config),
                                           indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["summary"].write_text(summary_table(summary, config, isolation), encoding="utf-8")
    plot = plot_pass_at_k(summary, config, directory / "passk.png")
    if plot:
        paths["plot"] = plot
    return paths


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _task_key(task_id: str) -> tuple[tuple[int, int, str], ...]:
    """Natural order: HumanEval/2 before HumanEval/10."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.findall(r"\d+|\D+", task_id))
