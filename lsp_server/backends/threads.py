"""How many threads llama.cpp decodes with: all the configured ones while they pay, fewer
while other programs take cores.

llama.cpp's threads meet at a spinning barrier several hundred times a token. When
another program takes one of their cores, a thread is descheduled mid-graph and the
others spin until it runs again: on 2 cores with one busy-loop process beside it, the
embedded model decoded 35 tokens a second with 2 threads and 139 with 1 (168 and 139 on
a quiet machine; benchmarks/RESULTS.md, session 15). A laptop always has something else
running, an editor rendering, a build, a browser; so :class:`ThreadGovernor` watches the
time a token takes at each thread count and decodes with the count that is fastest now.

- Levels: the configured count, then halved down to 1 (8, 4, 2, 1).
- Each generation of at least :data:`MIN_TOKENS` tokens is an observation: its time per
  token at the level it ran with, and the share of its time the decoding thread spent
  waiting for a core (the run-queue delay in ``/proc/thread-self/schedstat``; 0.00-0.01
  on a quiet machine here, 0.3-0.5 beside busy processes). A level's figure is the mean
  of its last observation and the one before, reset on returning to it.
- Going down: when the decoding thread waited over :data:`WAIT_SHARE` of the time, or
  (where the wait cannot be read) a token took over :data:`SLOW` times the level's best,
  the next generation runs one level lower, and that level is kept if the current one is
  over :data:`DOWN_MARGIN` times slower (a lower level already known to be that much
  faster is taken at once). Without that signal nothing moves down: times a token differ
  between generations with the context's length.
- Going up: below the configured count, one generation runs one level higher, and that
  level is kept if its time per token beats the current level's: first
  :data:`PROBE_FIRST` observations after moving down, then twice as many after each
  probe that lost, up to every :data:`PROBE_EVERY`. Contention is often a moment (a
  build step, a browser tab), and fewer threads evaluate prompts at a fraction of the
  rate: one thread evaluated 457 prompt tokens in 1,074 ms instead of 530 after such a
  moment in a jump replay (benchmarks/RESULTS.md, session 16).
- On a quiet machine nothing is tried: the configured count decodes every token, so
  greedy text stays exactly what it was (another thread count rounds differently).

:class:`ThreadGovernor` is pure: the backend asks :meth:`ThreadGovernor.level` before a
generation and tells :meth:`ThreadGovernor.observe` its figures after
(:func:`run_queue_wait_ns` reads the wait).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEDSTAT = "/proc/thread-self/schedstat"

# Shorter generations are dominated by their prompt evaluation and first-token costs.
MIN_TOKENS = 8
# Contention: the decoding thread waited for a core this share of the generation's time.
WAIT_SHARE = 0.1
# Down when the current level is this much slower than the next lower one: quiet, one
# thread less is 0-20 % slower a token here; beside one busy process 2 threads were 3.3 x
# slower than 1, beside two 1.2 x.
DOWN_MARGIN = 1.2
# Contention where the wait cannot be read: this much slower than the level's own best.
SLOW = 1.8
# Below the configured count: one generation one level higher this many observations
# after moving down, twice as many after each probe that lost, up to PROBE_EVERY; and a
# lower level that lost its trial is not tried again for PROBE_EVERY.
PROBE_FIRST = 3
PROBE_EVERY = 12


def levels_for(configured: int) -> tuple[int, ...]:
    """The configured count, then halved down to 1: (8, 4, 2, 1), (6, 3, 1), (1,)."""
    found = [max(1, configured)]
    while found[-1] > 1:
        found.append(found[-1] // 2)
    return tuple(found)


@dataclass
class ThreadGovernor:
    configured: int
    levels: tuple[int, ...] = field(init=False)
    current: int = field(init=False)
    # The next generation's level where it differs from ``current`` (a probe).
    trial: int | None = field(init=False, default=None)
    recent: dict[int, float] = field(init=False, default_factory=dict)
    best: dict[int, float] = field(init=False, default_factory=dict)
    observations: int = field(init=False, default=0)
    since_probe: int = field(init=False, default=0)
    # Observations between upward probes now (PROBE_FIRST, doubling up to PROBE_EVERY).
    probe_wait: int = field(init=False, default=PROBE_FIRST)
    switches: int = field(init=False, default=0)
    # Observations left before a lower level that lost its trial is tried again.
    lower_cooldown: int = field(init=False, default=0)
    # The last observation: its level and time a token (a level's figure averages it with
    # the next one at the same level).
    _last_level: int | None = field(init=False, default=None)
    _last_per_token: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.levels = levels_for(self.configured)
        self.current = self.levels[0]

    def level(self) -> int:
        """The thread count for the next generation."""
        return self.trial if self.trial is not None else self.current

    def observe(self, level: int, tokens: int, seconds: float, waiting: float | None = None) -> None:
        """A generation at ``level`` threads decoded ``tokens`` in ``seconds``; its
        decoding thread waited for a core ``waiting`` of the time (None: unknown)."""
        if tokens < MIN_TOKENS or seconds <= 0 or level not in self.levels:
            return
        per_token = seconds / tokens
        returning = self._last_level != level
        self.recent[level] = per_token if returning else (self._last_per_token + per_token) / 2
        self._last_level, self._last_per_token = level, per_token
        self.best[level] = min(self.best.get(level, per_token), per_token)
        self.observations += 1
        self.lower_cooldown = max(0, self.lower_cooldown - 1)
        probing, self.trial = self.trial, None
        if probing is not None and probing != self.current:
            self._end_probe(probing)
            return
        self._decide(waiting)

    def _end_probe(self, probed: int) -> None:
        here = self.recent.get(self.current)
        if probed < self.current:  # go down only if it is clearly faster
            if here is not None and here > DOWN_MARGIN * self.recent[probed]:
                self._switch(probed)
            else:
                self.lower_cooldown = PROBE_EVERY
        elif here is None or self.recent[probed] < here:
            self._switch(probed)
        else:
            self.probe_wait = min(PROBE_EVERY, 2 * self.probe_wait)
        self.since_probe = 0

    def _decide(self, waiting: float | None) -> None:
        index = self.levels.index(self.current)
        lower = self.levels[index + 1] if index + 1 < len(self.levels) else None
        higher = self.levels[index - 1] if index > 0 else None
        here = self.recent[self.current]
        if lower is not None:
            contended = waiting > WAIT_SHARE if waiting is not None else here > SLOW * self.best[self.current]
            if contended and not self.lower_cooldown:
                known = self.recent.get(lower)
                if known is not None and here > DOWN_MARGIN * known:
                    self._switch(lower)  # known to be faster: at once
                else:
                    self.trial = lower
                return
        if higher is not None:
            self.since_probe += 1
            if self.since_probe >= self.probe_wait:
                self.trial = higher

    def _switch(self, level: int) -> None:
        if level != self.current:
            if level < self.current:
                self.probe_wait = PROBE_FIRST
            self.current = level
            self.switches += 1
            self.since_probe = 0

    def stats(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "inUse": self.current,
            "switches": self.switches,
            "msPerToken": {str(level): round(value * 1000, 2) for level, value in sorted(self.recent.items())},
        }


def run_queue_wait_ns() -> int | None:
    """Nanoseconds the calling thread has waited, runnable, for a core (Linux schedstat's
    second field); None where the kernel does not say."""
    try:
        with open(SCHEDSTAT, "rb") as handle:
            return int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
