"""Where to stop a generated text: the request's stop strings, then its stop rule, then,
once its time budget has passed, the budget's cut. One rule for the local and the remote
backends."""

from __future__ import annotations

import time

from lsp_server.backends.base import GenerationRequest


def check_stops(
    text: str, request: GenerationRequest, started: float, now: float | None = None
) -> tuple[int | None, str]:
    """``(index to cut the text at, stop reason)``, or ``(None, "")`` to go on."""
    cut: int | None = None
    for stop in request.stop:
        found = text.find(stop)
        if found >= 0 and (cut is None or found < cut):
            cut = found
    if cut is not None:
        return cut, "stop"
    if request.stop_rule is not None:
        ruled = request.stop_rule(text)
        if ruled is not None:
            return ruled, "rule"
    budget = request.time_budget
    if budget is not None:
        elapsed = (time.perf_counter() if now is None else now) - started
        if elapsed > budget.seconds:
            cut = budget.cut(text)
            if cut is not None:
                return cut, "time"
            if budget.hard_seconds is not None and elapsed > budget.hard_seconds:
                return len(text), "time"
    return None, ""
