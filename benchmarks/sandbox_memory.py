"""Whole-run memory of the sandbox: one program forks children that each allocate and
touch a block, against a budget (``SandboxLimits.memory_mb``). Prints, for each
isolation and memory bound this machine offers, what the run was let hold: the
cgroup's own peak where there is one, and the most the run's processes held at once
by a sampler outside it (sum of their PSS, every few ms).

    .venv/bin/python benchmarks/sandbox_memory.py                       # 5 x 1024 MB vs 4096 MB
    .venv/bin/python benchmarks/sandbox_memory.py --children 5 --mb 200 --budget 512
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lsp_server.sandbox import SandboxLimits, SandboxResult, isolation_available, memory_bound
from lsp_server.sandbox.memory import FORCE_ENV

# argv: marker, children, MB each. Prints how many children held their block.
PROGRAM = r"""
import os, sys, time
children, mb = int(sys.argv[2]), int(sys.argv[3])
r, w = os.pipe()
for _ in range(children):
    try:
        pid = os.fork()
    except OSError:
        os.write(w, b"f")
        continue
    if pid == 0:
        os.close(r)
        try:
            block = b"\x01" * (mb * 1024 * 1024)
            os.write(w, b"x")
            time.sleep(30)
        except MemoryError:
            os.write(w, b"m")
        os._exit(0)
os.close(w)
got = b""
deadline = time.monotonic() + 20
while len(got) < children and time.monotonic() < deadline:
    chunk = os.read(r, children)
    if not chunk:
        break
    got += chunk
print("held", got.count(b"x"), "memoryerror", got.count(b"m"), "nofork", got.count(b"f"),
      flush=True)
time.sleep(1)
"""


@dataclass
class Measurement:
    result: SandboxResult
    sampled_peak_mb: float  # most PSS the run's processes held at once, seen from outside
    held: int  # children that allocated and touched their block (-1: not reported)
    marker: str  # on every command line of the run


def _pss_kb(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_pss_kb(marker: str) -> int:
    """Sum of the PSS of live processes whose command line holds ``marker``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if marker.encode() not in Path(f"/proc/{entry}/cmdline").read_bytes():
                continue
        except OSError:
            continue
        total += _pss_kb(entry)
    return total


def measure(children: int, mb: int, budget_mb: int, isolation_kind: str,
            timeout_s: float = 60.0) -> Measurement:
    """Run :data:`PROGRAM` in the sandbox while sampling its processes' memory."""
    from lsp_server.sandbox import run_python

    marker = f"sbxmem-{uuid.uuid4().hex}"
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], run_pss_kb(marker))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_python(PROGRAM, argv=[marker, str(children), str(mb)],
                            limits=SandboxLimits(memory_mb=budget_mb, timeout_s=timeout_s),
                            isolation_kind=isolation_kind)
    finally:
        stop.set()
        sampler.join()
    words = result.stdout.split()
    held = int(words[1]) if len(words) > 1 and words[0] == "held" else -1
    return Measurement(result, peak[0] / 1024, held, marker)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=5)
    parser.add_argument("--mb", type=int, default=1024, help="MB each child allocates")
    parser.add_argument("--budget", type=int, default=4096, help="memory_mb of the run")
    args = parser.parse_args()
    kinds = ["rlimits"] + (["bubblewrap"] if isolation_available() == "bubblewrap" else [])
    modes = [memory_bound().mode] + (["processes"] if memory_bound().whole_run else [])
    print(f"{args.children} children x {args.mb} MB against a {args.budget} MB budget "
          f"(asked: {args.children * args.mb} MB)")
    for mode in modes:
        for kind in kinds:
            if mode == "processes":
                os.environ[FORCE_ENV] = "processes"
            try:
                found = measure(args.children, args.mb, args.budget, kind)
            finally:
                os.environ.pop(FORCE_ENV, None)
            details = found.result.details
            print(f"  {kind:10s} {mode:11s} status={found.result.status:7s} "
                  f"children holding {args.mb} MB: {found.held}  "
                  f"sampled peak {found.sampled_peak_mb:7.1f} MB  "
                  f"cgroup peak {details.get('memory_peak_mb', '-')} MB  "
                  f"per process {details.get('process_memory_mb')} MB  "
                  f"reason: {found.result.reason or '-'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
