"""A progress bar on stderr: redrawn in place on a terminal, a line now and then in logs."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.total = max(0, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_line = -1.0

    def advance(self, count: int = 1, note: str = "") -> None:
        self.done = min(self.total, self.done + count)
        if not self.enabled:
            return
        if self._tty:
            self.stream.write("\r" + self.render(note))
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif time.monotonic() - self._last_line >= 15 or self.done >= self.total:
            self._last_line = time.monotonic()
            self.stream.write(self.render(note) + "\n")
            self.stream.flush()

    def render(self, note: str = "", width: int = 28) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(round(fraction * width))
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        bar = "#" * filled + "-" * (width - filled)
        text = (f"{self.label} [{bar}] {self.done}/{self.total} "
                f"{fraction:4.0%} {_clock(elapsed)} elapsed, {_clock(eta)} left")
        return f"{text}  {note}" if note else text


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
