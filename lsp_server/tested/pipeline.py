"""Test drawn candidates and rank them: the one function the editor feature and
``ghostpilot eval humaneval --rank doctest`` both call (:func:`test_candidates`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

from lsp_server.tested.checks import Checks, Evidence, check_candidate
from lsp_server.tested.rank import Candidate, code_key, dedupe, ranked

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


class Tester:
    """Tests candidates as they come (from a batch whose sequences end at different
    lengths): each distinct one is run in the sandbox as soon as it is added, ``workers``
    at a time; :meth:`outcome` waits for the runs and ranks. Thread-safe ``add``.

    ``expected`` is how many candidates will come (for the progress total while drawing)."""

    def __init__(
        self,
        document_text: str,
        checks: Checks,
        *,
        check: Check | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = 2,
        cancel: threading.Event | None = None,
        progress: Progress | None = None,
        expected: int = 0,
    ) -> None:
        self.document_text = document_text
        self.checks = checks
        self.cancel = cancel or threading.Event()
        self._run = check or partial(_sandboxed, timeout_s=timeout_s, cancel=self.cancel)
        self._progress = progress
        self._expected = expected
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self._lock = threading.Lock()
        self._kept: dict[str, Candidate] = {}
        self._copies: dict[str, int] = {}
        self._evidence: dict[str, Evidence] = {}
        self._futures: list[Future[None]] = []
        self._drawn = 0
        self._tested = 0
        self._passing = 0
        self._closed = False

    def add(self, candidate: Candidate) -> None:
        with self._lock:
            self._drawn += 1
            if not candidate.text.strip():
                return
            key = code_key(self.document_text, candidate)
            self._copies[key] = self._copies.get(key, 0) + 1
            kept = self._kept.get(key)
            if kept is not None:  # the same code: keep the first drawn, with the best log-prob
                if candidate.mean_logprob > kept.mean_logprob:
                    self._kept[key] = replace(kept, mean_logprob=candidate.mean_logprob)
                return
            self._kept[key] = candidate
            if self.checks.empty or self.cancel.is_set():
                return
            self._futures.append(self._pool.submit(self._test, key, candidate))

    def _test(self, key: str, candidate: Candidate) -> None:
        if self.cancel.is_set():
            return
        try:
            evidence = self._run(candidate.apply(self.document_text), self.checks)
        except Exception as error:  # a sandbox failure costs this candidate only
            evidence = Evidence(tuple(False for _ in self.checks.examples), {}, "error", str(error))
        if evidence.status == "cancelled" or self.cancel.is_set():
            return
        with self._lock:
            self._evidence[key] = evidence
            self._tested += 1
            self._passing += evidence.passes_all
            report = (self._tested, self._total(), self._passing)
        if self._progress is not None:
            self._progress(*report)

    def _total(self) -> int:
        return len(self._kept) if self._closed else max(len(self._kept), self._expected)

    def close(self) -> None:
        """No more candidates will come (the progress total becomes the distinct count)."""
        with self._lock:
            self._closed = True
            report = (self._tested, self._total(), self._passing)
        if self._progress is not None:
            self._progress(*report)

    def outcome(self) -> TestedOutcome:
        """Wait for every run, then rank (what finished, when cancelled)."""
        if not self._closed:
            self.close()
        for future in list(self._futures):
            if self.cancel.is_set():
                future.cancel()
        self._pool.shutdown(wait=True)
        with self._lock:
            found = []
            for key, candidate in self._kept.items():
                evidence = self._evidence.get(key)
                if not self.checks.empty and evidence is None:
                    continue  # not run: cancelled
                found.append(replace(candidate, evidence=evidence, copies=self._copies[key]))
            drawn = self._drawn
        return TestedOutcome(tuple(ranked(found)), drawn, self.checks, cancelled=self.cancel.is_set())


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
    sandbox (``workers`` at a time, ``timeout_s`` each), and rank them (a :class:`Tester`
    given them all at once).

    A candidate killed for its time, memory or processes ranks as passing nothing; the
    others are unaffected. ``cancel`` stops the runs in flight and returns what finished
    (marked ``cancelled``). ``check`` replaces the sandbox run (unit tests)."""
    distinct = dedupe(document_text, candidates)
    if progress is not None and not checks.empty:
        progress(0, len(distinct), 0)
    tester = Tester(document_text, checks, check=check, timeout_s=timeout_s, workers=workers,
                    cancel=cancel, progress=progress, expected=len(distinct))
    for candidate in candidates:
        tester.add(candidate)
    tester._closed = True  # the total is known: no separate progress call for closing
    return tester.outcome()


def _sandboxed(source: str, checks: Checks, *, timeout_s: float, cancel: threading.Event) -> Evidence:
    return check_candidate(source, checks, timeout_s=timeout_s, cancel=cancel)


test_candidates.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
