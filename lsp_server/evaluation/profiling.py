"""Sampling profiles of the running server, taken with py-spy, and their summary.

``ghostpilot bench latency --profile FILE`` attaches py-spy to ``ghostpilot serve`` for
the timed replay only and writes its raw (collapsed-stack) output to FILE; the bench
prints the functions that hold the most samples. Profiling slows the server a little:
take figures from a run without it.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINE_NUMBER = re.compile(r":\d+\)$")


def find_py_spy() -> Path | None:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return beside
    found = shutil.which("py-spy")
    return Path(found) if found else None


class Profiler:
    """py-spy recording one process until :meth:`stop`."""

    def __init__(self, pid: int, out: Path, *, rate: int = 200) -> None:
        exe = find_py_spy()
        if exe is None:
            raise FileNotFoundError("py-spy not found; pip install py-spy (it is in the dev extra)")
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.process = subprocess.Popen(
            [str(exe), "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate),
             "--output", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop sampling and wait until the profile is written."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        if not self.out.exists():
            message = (stderr or b"").decode("utf-8", errors="replace").strip()
            raise RuntimeError(f"py-spy wrote no profile: {message or 'no output'}")


@dataclass(frozen=True)
class FrameShare:
    frame: str  # "function (file)"
    inclusive: float  # share of samples with the frame on the stack
    own: float  # share of samples with the frame on top


def summarize(raw: str, top: int = 15) -> tuple[int, list[FrameShare]]:
    """(samples, the ``top`` frames by inclusive share) of py-spy's raw output.

    Each line is ``frame;frame;...;frame COUNT`` with the outermost frame first.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE_NUMBER.sub(")", frame.strip()) for frame in stack.split(";") if frame.strip()]
        if not frames:
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if total == 0:
        return 0, []
    ranked = sorted(inclusive, key=lambda frame: (-inclusive[frame], frame))[:top]
    return total, [FrameShare(frame, inclusive[frame] / total, own[frame] / total) for frame in ranked]


def table(raw: str, top: int = 15) -> str:
    total, shares = summarize(raw, top)
    lines = [f"py-spy samples: {total}", "| frame | on stack | on top |", "|---|---|---|"]
    lines += [f"| `{s.frame}` | {s.inclusive:.1%} | {s.own:.1%} |" for s in shares]
    return "\n".join(lines) + "\n"
