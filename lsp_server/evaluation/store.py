"""The run's append-only record: one JSON line per finished sample.

A run writes ``config.json`` once and appends to ``samples.jsonl`` as samples finish,
flushing each line, so an interrupted run loses at most the samples in flight and
``--resume`` picks up where it stopped. A truncated last line (killed mid-write) is
ignored and redone.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Config keys that must match for samples of two runs to be pooled.
IDENTITY_KEYS = ("benchmark", "model", "n", "temperature", "top_p", "rank", "timeout_s",
                 "max_tokens")


class RunStoreError(ValueError):
    """The output directory cannot be used as asked (existing results, other config)."""


class RunStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.samples_path = self.directory / "samples.jsonl"
        self.config_path = self.directory / "config.json"
        self._lock = threading.Lock()

    def check(self, config: dict[str, Any], *, resume: bool) -> list[dict[str, Any]]:
        """Raise :class:`RunStoreError` if the directory cannot take this run; returns
        the records already finished. Writes nothing."""
        existing = list(self.records()) if self.samples_path.exists() else []
        if existing and not resume:
            raise RunStoreError(
                f"{self.directory} already holds {len(existing)} finished samples; "
                "pass --resume to continue that run or choose another --out")
        if resume and self.config_path.exists():
            old = json.loads(self.config_path.read_text(encoding="utf-8"))
            changed = [k for k in IDENTITY_KEYS if old.get(k) != config.get(k)]
            if changed:
                details = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in changed)
                raise RunStoreError(f"cannot resume {self.directory} with other settings ({details})")
        return existing

    def open(self, config: dict[str, Any], *, resume: bool) -> list[dict[str, Any]]:
        """Prepare the directory; returns the records already finished (resume only)."""
        existing = self.check(config, resume=resume)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return existing

    def records(self) -> Iterator[dict[str, Any]]:
        with open(self.samples_path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interruption
                if isinstance(record, dict) and "task_id" in record:
                    yield record

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock, open(self.samples_path, "a", encoding="utf-8") as fh:
            if fh.tell() and not _ends_with_newline(self.samples_path):
                fh.write("\n")
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
