"""``ghostpilot docstring FILE[:NAME]``: generate docstrings with the embedded model.

NAME is a function, class or ``Class.method`` (or a 1-based line number). Without it,
every function, method and class that has no docstring is documented. The result is
printed as a unified diff, or written back with ``--write``; the same code path as the
editor's "Generate docstring" action.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from pathlib import Path

from lsp_server import docstrings
from lsp_server.backends.base import GenerationRequest, GenerationResult, ModelUnavailable
from lsp_server.config import Settings, merge
from lsp_server.parsing import syntax
from lsp_server.policy import path_reader
from lsp_server.prompts.budget import PromptBudget
from lsp_server.runtime import prompt_budget, start_worker


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "docstring",
        help="generate docstrings for FILE[:NAME] (a diff, or --write to apply)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", help="FILE, FILE:NAME (func, Class, Class.method), FILE:LINE or FILE:LINE:COL")
    parser.add_argument(
        "--style",
        choices=["auto", "google", "numpy", "sphinx"],
        help="docstring style (default: the docstringStyle setting, i.e. detected)",
    )
    parser.add_argument("--write", action="store_true", help="write the file instead of a diff")
    parser.add_argument(
        "--skeleton", action="store_true", help="no model: the structure with placeholders (fast)"
    )
    parser.add_argument("--model", help="GGUF path or registry name (default: embedded)")
    parser.add_argument("--n-threads", type=int)
    parser.set_defaults(func=run)


def split_target(target: str) -> tuple[Path, str | None]:
    """``FILE[:NAME]``; a colon that is part of an existing path (``C:\\x``) stays in it.
    ``FILE:LINE:COL`` (as ``ghostpilot complete`` and compilers write places) is taken as
    ``FILE:LINE``: the definition at that line."""
    path, sep, name = target.rpartition(":")
    inner, inner_sep, line = path.rpartition(":")
    if (sep and inner_sep and line.isdigit() and name.isdigit() and inner
            and not Path(target).exists() and not Path(path).exists()):
        return Path(inner), line
    if not sep or not path or Path(target).exists() or "/" in name or "\\" in name:
        return Path(target), None
    return Path(path), name or None


def _fail(message: str, code: int = 2) -> int:
    print(f"ghostpilot docstring: {message}", file=sys.stderr)
    return code


def _offset_of_line(text: str, line: int) -> int:
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise docstrings.NoDefinition(f"line {line} is outside the file ({len(lines)} lines).")
    first = sum(len(item) + 1 for item in lines[: line - 1])
    return first + len(lines[line - 1]) - len(lines[line - 1].lstrip())


def run(args: argparse.Namespace) -> int:
    path, name = split_target(args.target)
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # keep CRLF as it is
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        return _fail(str(error))
    raw = {"model": args.model, "nThreads": args.n_threads}
    settings, problems = merge(Settings(), {k: v for k, v in raw.items() if v is not None})
    for problem in problems:
        print(f"ghostpilot docstring: {problem}", file=sys.stderr)
    style = args.style or settings.docstring_style
    project = docstrings.project_docstrings(
        docstrings.project_root(path), readable=path_reader(settings)
    )

    def job_for(current: str, offset: int | None, wanted: str | None) -> docstrings.DocstringJob:
        return docstrings.prepare(
            current,
            offset=offset,
            name=wanted,
            style=style,
            project_docstrings=project,
        )

    targets: list[tuple[int | None, str | None]]
    try:
        if name is not None and name.isdigit():
            targets = [(_offset_of_line(text, int(name)), None)]
        elif name is not None:
            targets = [(None, name)]
        else:
            if not text.strip():
                raise docstrings.EmptyFile()
            source = text.encode("utf-8")
            found = docstrings.undocumented(syntax.parse(source), source)
            if not found:
                print(f"{path}: every function and class already has a docstring", file=sys.stderr)
                return 0
            # Bottom up, so each edit leaves the offsets of the ones still to do unchanged.
            targets = [
                (len(source[: d.header_start].decode("utf-8")), None) for d in reversed(found)
            ]
        first_job = job_for(text, *targets[0])  # bad input fails before the model loads
    except docstrings.NoDefinition as error:
        if name is not None and name.isdigit():
            return _fail(f"{path}: line {name} is not inside a function, method or class.")
        return _fail(f"{path}: {error}")
    except docstrings.DocstringError as error:
        return _fail(f"{path}: {error}")

    loaded = None if args.skeleton else _load(settings)
    if loaded is None and not args.skeleton:
        return 1
    model, budget = loaded if loaded is not None else (None, None)
    new_text = text
    for number, (offset, wanted) in enumerate(targets, 1):
        try:
            job = first_job if number == 1 else job_for(new_text, offset, wanted)
            label = f"{job.structure.name} ({number}/{len(targets)}, {job.style.value})"
            print(f"documenting {label}", file=sys.stderr)
            outcome = docstrings.generate(job, model, budget=budget)
        except docstrings.DocstringError as error:
            print(f"ghostpilot docstring: {path}: {error}", file=sys.stderr)
            continue
        new_text = outcome.new_text
    if args.write:
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(new_text)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.writelines(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=str(path),
                tofile=str(path),
            )
        )
    return 0


def _load(
    settings: Settings,
) -> tuple[Callable[[GenerationRequest], GenerationResult], PromptBudget] | None:
    """The model as a function and its prompt budget, or None (with the reason on
    stderr) if it did not load."""
    try:
        worker = start_worker(settings)
    except ModelUnavailable as error:
        print(f"ghostpilot docstring: {error}", file=sys.stderr)
        return None

    def model(request: GenerationRequest) -> GenerationResult:
        return worker.generate_blocking(request)

    return model, prompt_budget(worker, settings.n_ctx)
