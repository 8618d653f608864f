"""Ranking tested candidates (pure): passes all, then passes most, then mean log-prob;
candidates that differ only in formatting are one."""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from lsp_server.tested.checks import Evidence


@dataclass(frozen=True)
class Candidate:
    """One drawn body: ``text`` replaces ``document[start:end]`` (code points)."""

    text: str
    start: int
    end: int
    mean_logprob: float = float("-inf")
    index: int = 0  # the order it was drawn in (ties go to the first drawn)
    evidence: Evidence | None = None
    # Drawn candidates with the same code (formatting aside), this one included.
    copies: int = 1

    def apply(self, document_text: str) -> str:
        return document_text[: self.start] + self.text + document_text[self.end :]


def rank_key(evidence: Evidence | None, mean_logprob: float) -> tuple[int, int, float]:
    """Higher is better: passes everything, then passes the most, then mean log-prob.
    The one key for the editor and ``ghostpilot eval humaneval --rank doctest``."""
    logprob = mean_logprob if mean_logprob is not None and not math.isnan(mean_logprob) else -math.inf
    if evidence is None:
        return (0, 0, logprob)
    return (int(evidence.passes_all), evidence.passed, logprob)


def ranked(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Best first; among equals, the first drawn."""
    return sorted(candidates, key=lambda c: (tuple(-x for x in rank_key(c.evidence, c.mean_logprob)), c.index))


def code_key(document_text: str, candidate: Candidate) -> str:
    """What two candidates share when they differ only in formatting and comments: the
    AST of the file with the candidate in place (the text itself where it does not parse)."""
    filled = candidate.apply(document_text)
    try:
        return ast.dump(ast.parse(filled))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "text:" + "\n".join(line.rstrip() for line in candidate.text.strip().splitlines())


def dedupe(document_text: str, candidates: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per distinct code (the most likely of its copies), in drawn order.
    Empty candidates are dropped."""
    best: dict[str, Candidate] = {}
    counts: dict[str, int] = {}
    for candidate in candidates:
        if not candidate.text.strip():
            continue
        key = code_key(document_text, candidate)
        counts[key] = counts.get(key, 0) + 1
        kept = best.get(key)
        if kept is None or candidate.mean_logprob > kept.mean_logprob:
            best[key] = candidate if kept is None else replace(candidate, index=kept.index)
    return sorted((replace(c, copies=counts[k]) for k, c in best.items()), key=lambda c: c.index)
