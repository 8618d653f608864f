"""When to try an engine again after it failed: a backoff, and which failures mean
"unreachable" (pure; the clock is passed in).

A request that finds the engine down fails at once until the backoff says the next try
is due, so a typing user costs the engine one connection attempt per interval, never one
per keystroke, and never a busy loop. The interval doubles from ``initial_s`` up to
``max_s``; a success resets it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsp_server.backends.remote.http import RemoteError

# Failures that say the engine cannot be reached (or is not serving yet: HTTP 5xx, such
# as llama-server's 503 while it loads its model). A local fallback may stand in for
# these; 401 (key) and 404 (model) are the user's settings to fix, and no fallback hides them.
UNREACHABLE_KINDS = frozenset({"refused", "dns", "timeout", "dropped", "tls"})


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the engine is down or unreachable (not misconfigured)."""
    if not isinstance(error, RemoteError):
        return False
    return error.kind in UNREACHABLE_KINDS or (error.kind == "http" and error.status >= 500)


@dataclass
class Backoff:
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 8.0
    failures: int = 0
    next_try: float = 0.0  # monotonic time of the next allowed try

    def due(self, now: float) -> bool:
        return now >= self.next_try

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns the wait until the next try."""
        wait = min(self.max_s, self.initial_s * self.factor**self.failures)
        self.failures += 1
        self.next_try = now + wait
        return wait

    def succeeded(self) -> None:
        self.failures = 0
        self.next_try = 0.0
