"""Test drawn candidates and rank them: the one function the editor feature and
``ghostpilot eval humaneval --rank doctest`` both call (:func:`test_candidates`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import partial

from lsp_server.tested.checks import Checks, Evidence, check_candidate
from lsp_server.tested.rank import Candidate, dedupe, ranked

# Seconds one candidate may run (its examples and tests together).
DEFAULT_TIMEOUT_S = 5.0

Check = Callable[[str, Checks], Evidence]
# progress(tested so far, to test, passing everything so far)
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class TestedOutcome:
    """The ranked candidates (best first) and how many were drawn."""

    __test__ = False  # not a pytest class

    candidates: tuple[Candidate, ...]
    drawn: int
    checks: Checks
    cancelled: bool = False

    @property
    def passing(self) -> int:
        return sum(1 for c in self.candidates if c.evidence is not None and c.evidence.passes_all)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def summary(self) -> str:
        """"3 of 8 candidates pass 3 docstring examples" / "0 of 8 pass: the best ..."."""
        unique = len(self.candidates)
        drawn = f"{self.drawn} drawn" + (f", {unique} distinct" if unique != self.drawn else "")
        if self.cancelled:
            return f"cancelled ({drawn})"
        if not unique:
            return f"no candidate ({drawn}, all empty)"
        if self.passing:
            return f"{self.passing} of {unique} pass {self.checks.describe()} ({drawn})"
        best = self.candidates[0].evidence
        return (f"0 of {unique} pass {self.checks.describe()} ({drawn}); the best "
                + (best.label() if best else "was not run"))


def candidate_title(position: int, count: int, candidate: Candidate) -> str:
    """"candidate 1/5 · passes 3/3 examples, 2/2 tests"."""
    label = candidate.evidence.label() if candidate.evidence else "not tested"
    return f"candidate {position}/{count} \u00b7 {label}"


def test_candidates(
    document_text: str,
    candidates: Sequence[Candidate],
    checks: Checks,
    *,
    check: Check | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int = 2,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> TestedOutcome:
    """Drop formatting-only duplicates, run each distinct candidate's checks in the
    sandbox (``workers`` at a time, ``timeout_s`` each), and rank them.

    A candidate killed for its time, memory or processes ranks as passing nothing; the
    others are unaffected. ``cancel`` stops the runs in flight and returns what finished
    (marked ``cancelled``). ``check`` replaces the sandbox run (unit tests)."""
    cancel = cancel or threading.Event()
    run = check or partial(_sandboxed, timeout_s=timeout_s, cancel=cancel)
    distinct = dedupe(document_text, candidates)
    if checks.empty:
        return TestedOutcome(tuple(ranked(distinct)), len(candidates), checks)
    done: list[Candidate] = []
    passing = 0
    if progress is not None:
        progress(0, len(distinct), 0)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(run, c.apply(document_text), checks): c for c in distinct}
        for future in as_completed(futures):
            candidate = futures[future]
            try:
                evidence = future.result()
            except Exception as error:  # a sandbox failure costs this candidate only
                evidence = Evidence(tuple(False for _ in checks.examples), {}, "error", str(error))
            if evidence.status == "cancelled" or cancel.is_set():
                for other in futures:
                    other.cancel()
                continue
            done.append(replace(candidate, evidence=evidence))
            passing += evidence.passes_all
            if progress is not None:
                progress(len(done), len(distinct), passing)
    return TestedOutcome(tuple(ranked(done)), len(candidates), checks, cancelled=cancel.is_set())


def _sandboxed(source: str, checks: Checks, *, timeout_s: float, cancel: threading.Event) -> Evidence:
    return check_candidate(source, checks, timeout_s=timeout_s, cancel=cancel)


test_candidates.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
