"""Where a training run stands, from its log (torch-free).

    python3 -m training.status [artifacts/train/run]

Prints the step, epoch, mean loss over the last steps, the tokens/s, the validation
losses at each checkpoint (best marked), whether the process in train.pid is running,
paused or gone, and an estimate of the time left at the recent speed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "artifacts" / "train" / "run"


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training steps, validation points) from a run's log.jsonl."""
    steps: list[dict[str, Any]] = []
    vals: list[dict[str, Any]] = []
    if not path.exists():
        return steps, vals
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in row:
            steps.append(row)
        elif row.get("val_loss") is not None:
            vals.append(row)
    return steps, vals


def process_state(pid_file: Path) -> str:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return "no pid file"
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}: not running"
    if b"training.train" not in cmdline:
        return f"pid {pid}: not running (the pid is another process now)"
    return f"pid {pid}: {'paused (SIGSTOP)' if fields[0] == 'T' else 'running'}"


def summary(run: Path, window: int = 20) -> str:
    steps, vals = read_log(run / "log.jsonl")
    config: dict[str, Any] = {}
    if (run / "run_config.json").exists():
        config = json.loads((run / "run_config.json").read_text())
    pid_file = run.parent / "train.pid" if (run.parent / "train.pid").exists() else run / "train.pid"
    lines = [f"run {run}: {process_state(pid_file)}"]
    if steps:
        last = steps[-window:]
        mean = sum(s["loss"] for s in last) / len(last)
        span = last[-1]["time"] - last[0]["time"] if len(last) > 1 else 0.0
        speed = (last[-1]["tokens"] - last[0]["tokens"]) / span if span > 0 else 0.0
        lines.append(f"step {steps[-1]['step']}, epoch {steps[-1]['epoch']}, "
                     f"{steps[-1]['tokens']} tokens; mean loss of the last {len(last)} steps "
                     f"{mean:.4f}; {speed:.1f} tokens/s lately")
        per_step = span / (len(last) - 1) if len(last) > 1 else 0.0
        total = config.get("max_steps") or None
        if total is None and (run / "total_steps").exists():
            total = int((run / "total_steps").read_text())
        if total and per_step:
            left = (total - steps[-1]["step"]) * per_step
            lines.append(f"about {left / 3600:.1f} h left for {total - steps[-1]['step']} "
                         f"steps at {per_step:.0f} s/step")
    best = min(vals, key=lambda v: v["val_loss"]) if vals else None
    for v in vals:
        mark = "  <- best" if v is best else ""
        lines.append(f"  val loss at step {v['step']}: {v['val_loss']:.4f}{mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.status", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", default=RUN)
    args = parser.parse_args(argv)
    print(summary(args.run))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
