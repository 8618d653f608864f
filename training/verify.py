"""The Codex-S filter: keep a function only if its docstring's examples pass.

Each function runs alone in the project's sandbox (``lsp_server.sandbox``), with only
its stdlib imports, through the same doctest program the evaluation harness uses to
rank samples (``lsp_server.evaluation.doctests``): it passes when at least one example
ran and none failed. A function that needs anything it was not given (another function
of its module, a package) fails here, which is what makes the set *standalone*.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lsp_server.evaluation import doctests
from lsp_server.sandbox import SandboxLimits, run_python
from training.extract import Candidate

LIMITS = SandboxLimits(timeout_s=10.0, memory_mb=1024, output_limit_kb=64)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    attempted: int
    failed: int
    reason: str  # "" when passed; else the sandbox status, reason or error line


def program_source(candidate: Candidate) -> str:
    """The module the examples run against: the function (and, for a staticmethod, a
    class of the same name holding it, so ``Class.name(...)`` works too)."""
    code = candidate.code
    if "." in candidate.qualname:
        cls, name = candidate.qualname.split(".", 1)
        code += f"\n\nclass {cls}:\n    {name} = staticmethod({name})\n"
    return code


def cache_key(candidate: Candidate) -> str:
    return hashlib.sha256(program_source(candidate).encode("utf-8")).hexdigest()


def check(candidate: Candidate, limits: SandboxLimits = LIMITS) -> Verdict:
    nonce = secrets.token_hex(16)
    program = doctests.doctest_program(program_source(candidate), candidate.docstring,
                                       candidate.name, nonce)
    result = run_python(program, limits=limits)
    counts = doctests.parse_counts(result.stdout, nonce)
    attempted, failed = counts if counts else (0, 0)
    passed = result.passed and counts is not None and attempted > 0 and failed == 0
    if passed:
        return Verdict(True, attempted, failed, "")
    if counts is not None and attempted == 0:
        reason = "no example ran"
    elif counts is not None:
        reason = f"{failed} of {attempted} examples failed"
    else:
        reason = result.reason or result.status or "no result"
    return Verdict(False, attempted, failed, reason)


class VerdictCache:
    """Verdicts by program hash in a JSONL file, so a rebuild reruns nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._known: dict[str, Verdict] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                    self._known[data["key"]] = Verdict(data["passed"], data["attempted"],
                                                       data["failed"], data["reason"])
                except (json.JSONDecodeError, KeyError):
                    continue

    def get(self, key: str) -> Verdict | None:
        return self._known.get(key)

    def put(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._known[key] = verdict
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "passed": verdict.passed,
                                     "attempted": verdict.attempted, "failed": verdict.failed,
                                     "reason": verdict.reason}) + "\n")


def check_all(candidates: Iterable[Candidate], cache: VerdictCache, *, workers: int = 2,
              progress: Callable[[int, int], None] | None = None) -> list[Verdict]:
    """Verdicts in the order of ``candidates``; cached ones are not rerun."""
    items = list(candidates)
    verdicts: list[Verdict | None] = [None] * len(items)
    todo = []
    for i, candidate in enumerate(items):
        known = cache.get(cache_key(candidate))
        if known is not None:
            verdicts[i] = known
        else:
            todo.append(i)
    done = [0]
    lock = threading.Lock()

    def run(i: int) -> None:
        verdict = check(items[i])
        cache.put(cache_key(items[i]), verdict)
        verdicts[i] = verdict
        with lock:
            done[0] += 1
            if progress:
                progress(done[0], len(todo))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, todo))
    return [v if v is not None else Verdict(False, 0, 0, "not run") for v in verdicts]
