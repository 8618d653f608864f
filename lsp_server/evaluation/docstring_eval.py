"""Codex-D on HumanEval: how good are the generated docstrings?

For each task the entry point's docstring is removed from prompt + canonical solution
and generated again through the product's path (:mod:`lsp_server.docstrings`). Then:

- **structure**: judged independently with Python's ``ast`` on the edited file: each
  parameter documented (name, type hint, a description), none invented, Returns
  present exactly when the function returns a value;
- **back-translation** (Codex paper, Codex-D): the same model writes the body from the
  signature plus the generated docstring, through the completion engine as in the
  editor, and HumanEval's tests run on it in the sandbox; pass@1 (greedy) is compared
  with the same procedure on the original docstrings.

Baselines: what the model writes when asked for a whole docstring in one go (unguided,
before any checking), and optionally the body written from the signature alone.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lsp_server import docstrings
from lsp_server.backends.base import GenerationRequest, GenerationResult
from lsp_server.docstrings.styles import PLACEHOLDER, ParsedDocstring, parse_docstring
from lsp_server.evaluation.tasks import Task, check_program, passed
from lsp_server.prompts.budget import PromptBudget
from lsp_server.sandbox import SandboxLimits, run_python

Model = Callable[[GenerationRequest], GenerationResult]
Body = Callable[[str, int], Any]  # (text, cursor) -> Sample with .apply(text)

RAW_TOKENS = 160


# ------------------------------------------------------------------------ pure parts


def strip_docstring(source: str, name: str) -> tuple[str, str]:
    """``source`` without the docstring of function ``name``, and that docstring's literal."""
    job = docstrings.prepare(source, name=name)
    node = job.definition.existing_docstring
    if node is None:
        return source, ""
    start = len(job.source[: node.start_byte].decode("utf-8"))
    end = len(job.source[: node.end_byte].decode("utf-8"))
    line_start = source.rfind("\n", 0, start) + 1
    line_end = source.find("\n", end)
    line_end = len(source) if line_end == -1 else line_end + 1
    if source[line_start:start].strip() or source[end:line_end].strip():
        return source[:start] + "pass" + source[end:], source[start:end]
    return source[:line_start] + source[line_end:], source[start:end]


def _function(tree: ast.AST, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    return None


def _returns_value(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    if function.returns is not None and ast.unparse(function.returns) in ("None", "NoReturn"):
        return False
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if (
            isinstance(node, ast.Return)
            and node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)
        ):
            return True
        stack.extend(ast.iter_child_nodes(node))
    return False


def expected_params(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, str | None]:
    """Parameter display names (``*args``) and their annotations, per Python itself."""
    a = function.args
    found: dict[str, str | None] = {}
    for arg in [*a.posonlyargs, *a.args]:
        found[arg.arg] = ast.unparse(arg.annotation) if arg.annotation else None
    if a.vararg:
        found["*" + a.vararg.arg] = (
            ast.unparse(a.vararg.annotation) if a.vararg.annotation else None
        )
    for arg in a.kwonlyargs:
        found[arg.arg] = ast.unparse(arg.annotation) if arg.annotation else None
    if a.kwarg:
        found["**" + a.kwarg.arg] = ast.unparse(a.kwarg.annotation) if a.kwarg.annotation else None
    return found


def _same_type(documented: str | None, annotation: str | None) -> bool:
    if annotation is None or documented is None:
        return True  # nothing to check against, or left to the hint (Google style allows it)
    return re.sub(r"\s+", "", documented) == re.sub(r"\s+", "", annotation)


@dataclass
class StructureScore:
    params: int = 0  # parameters the function has
    documented: int = 0  # ...with an entry of the right name and type
    described: int = 0  # ...whose entry has prose from the model (not a placeholder)
    invented: int = 0  # entries for parameters the function does not have
    returns_expected: bool = False
    returns_documented: bool = False
    summary: bool = False  # a summary line that is not a placeholder

    @property
    def returns_ok(self) -> bool:
        return self.returns_expected == self.returns_documented

    @property
    def exact(self) -> bool:
        return self.documented == self.params and not self.invented and self.returns_ok


def score_docstring(
    parsed: ParsedDocstring, function: ast.FunctionDef | ast.AsyncFunctionDef
) -> StructureScore:
    expected = expected_params(function)
    names = {name.lstrip("*"): name for name in expected}
    score = StructureScore(params=len(expected), returns_expected=_returns_value(function))
    for name, (documented_type, text) in parsed.params.items():
        display = names.get(name.lstrip("*"))
        if display is None:
            score.invented += 1
            continue
        if _same_type(documented_type, expected[display]):
            score.documented += 1
            if text and text != PLACEHOLDER:
                score.described += 1
    score.returns_documented = parsed.returns is not None
    score.summary = bool(parsed.summary) and parsed.summary != PLACEHOLDER
    return score


def score_file(text: str, name: str) -> StructureScore:
    """Score the docstring of ``name`` in ``text`` (which must parse) with Python's ast."""
    function = _function(ast.parse(text), name)
    if function is None:
        raise ValueError(f"{name} is not in the edited file")
    literal = ast.get_docstring(function, clean=False) or ""
    return score_docstring(parse_docstring(literal), function)


def with_docstring(prompt: str, name: str, texts: dict[str, str], style: str) -> str:
    """The HumanEval prompt with ``name``'s original docstring replaced by one with ``texts``."""
    job = docstrings.prepare(prompt, name=name, style=style)
    return docstrings.finish(job, texts).new_text


def without_docstring(prompt: str, name: str) -> str:
    """The prompt with the signature alone (the body then starts right after it)."""
    stripped, _ = strip_docstring(prompt, name)
    return stripped


def raw_prompt(job: docstrings.DocstringJob) -> str:
    """The unguided baseline: code, signature, opened docstring; the model writes it all."""
    return f"{job.code}\n\n\n{job.signature}\n{job.place.unit}{job.place.quoting.quote}"


# ------------------------------------------------------------------------------ run


@dataclass
class EvalSettings:
    style: str = "google"
    timeout_s: float = 10.0
    signature_baseline: bool = False
    # The model's prompt budget, as the editor uses it (None: stand-in models).
    budget: PromptBudget | None = None


@dataclass
class TaskRecord:
    task_id: str
    entry_point: str
    docstring: str = ""
    origin: dict[str, str] = field(default_factory=dict)
    structure: dict[str, Any] = field(default_factory=dict)
    docstring_s: float = 0.0
    passed_generated: bool = False
    passed_original: bool = False
    passed_signature_only: bool | None = None
    raw_structure: dict[str, Any] | None = None
    raw_docstring: str | None = None
    error: str = ""


def _score_json(score: StructureScore) -> dict[str, Any]:
    return {**asdict(score), "returns_ok": score.returns_ok, "exact": score.exact}


def _run_body(task: Task, prompt: str, body: Body, timeout_s: float) -> bool:
    sample = body(prompt, len(prompt))
    filled = sample.apply(prompt)
    nonce = secrets.token_hex(16)
    result = run_python(
        check_program(filled, task, nonce),
        limits=SandboxLimits(timeout_s=timeout_s, output_limit_kb=64),
    )
    return passed(result.returncode, result.stdout, nonce)


def evaluate_task(task: Task, model: Model, body: Body, settings: EvalSettings) -> TaskRecord:
    record = TaskRecord(task.task_id, task.entry_point)
    try:
        full = task.prompt + task.canonical_solution
        stripped, _original = strip_docstring(full, task.entry_point)
        job = docstrings.prepare(stripped, name=task.entry_point, style=settings.style)
        started = time.perf_counter()
        outcome = docstrings.generate(job, model, budget=settings.budget)
        record.docstring_s = round(time.perf_counter() - started, 3)
        record.docstring = outcome.literal
        record.origin = dict(outcome.draft.origin) if outcome.draft else {}
        record.structure = _score_json(score_file(outcome.new_text, task.entry_point))
        texts = dict(outcome.draft.texts) if outcome.draft else {}
        generated_prompt = with_docstring(task.prompt, task.entry_point, texts, job.style.value)
        record.passed_generated = _run_body(task, generated_prompt, body, settings.timeout_s)
        record.passed_original = _run_body(task, task.prompt, body, settings.timeout_s)
        # Baseline: the whole docstring in one go, unguided and unchecked.
        raw = model(
            GenerationRequest(
                prompt=raw_prompt(job),
                max_tokens=RAW_TOKENS,
                stop=('"""', "'''", "\ndef ", "\nclass "),
            )
        )
        record.raw_docstring = raw.text
        function = _function(ast.parse(stripped), task.entry_point)
        if function is not None:
            record.raw_structure = _score_json(score_docstring(parse_docstring(raw.text), function))
        if settings.signature_baseline:
            record.passed_signature_only = _run_body(
                task, without_docstring(task.prompt, task.entry_point), body, settings.timeout_s
            )
    except Exception as error:  # noqa: BLE001 - one bad task must not end the run
        record.error = f"{type(error).__name__}: {error}"
    return record


def _share(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _structure_summary(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    params = sum(s["params"] for s in scores)
    return {
        "functions": len(scores),
        "parameters": params,
        "params_documented": _share(sum(s["documented"] for s in scores), params),
        "params_described_by_model": _share(sum(s["described"] for s in scores), params),
        "invented_params": sum(s["invented"] for s in scores),
        "returns_correct": _share(sum(1 for s in scores if s["returns_ok"]), len(scores)),
        "summaries": _share(sum(1 for s in scores if s["summary"]), len(scores)),
        "exact_structure": _share(sum(1 for s in scores if s["exact"]), len(scores)),
    }


def summarize(records: Sequence[TaskRecord]) -> dict[str, Any]:
    ok = [r for r in records if not r.error]
    generated = sum(r.passed_generated for r in ok)
    original = sum(r.passed_original for r in ok)
    summary: dict[str, Any] = {
        "tasks": len(records),
        "errors": len(records) - len(ok),
        "structure": _structure_summary([r.structure for r in ok]),
        "pass@1_generated_docstring": _share(generated, len(ok)),
        "pass@1_original_docstring": _share(original, len(ok)),
        "ratio_generated_to_original": _share(generated, original),
        "mean_docstring_s": _share(sum(r.docstring_s for r in ok), len(ok)),
    }
    slots = [o for r in ok for o in r.origin.values()]
    summary["slots"] = {
        kind: slots.count(kind) for kind in ("model", "repaired", "fallback", "placeholder")
    }
    baseline = [r for r in ok if r.passed_signature_only is not None]
    if baseline:
        summary["pass@1_signature_only"] = _share(
            sum(bool(r.passed_signature_only) for r in baseline), len(baseline)
        )
    raw = [r.raw_structure for r in ok if r.raw_structure is not None]
    if raw:
        summary["raw_unguided_structure"] = _structure_summary(raw)
    return summary


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_table(summary: dict[str, Any]) -> str:
    s = summary["structure"]
    rows = [
        ("tasks (errors)", f"{summary['tasks']} ({summary['errors']})"),
        ("parameters", str(s["parameters"])),
        ("params documented (name+type)", _percent(s["params_documented"])),
        ("params described by the model", _percent(s["params_described_by_model"])),
        ("invented params", str(s["invented_params"])),
        ("Returns present iff returns", _percent(s["returns_correct"])),
        ("exact structure", _percent(s["exact_structure"])),
        ("model summary line", _percent(s["summaries"])),
    ]
    raw = summary.get("raw_unguided_structure")
    if raw:
        rows += [
            ("unguided: params documented", _percent(raw["params_documented"])),
            ("unguided: invented params", str(raw["invented_params"])),
            ("unguided: Returns iff returns", _percent(raw["returns_correct"])),
            ("unguided: exact structure", _percent(raw["exact_structure"])),
        ]
    rows += [
        ("pass@1, generated docstring", _percent(summary["pass@1_generated_docstring"])),
        ("pass@1, original docstring", _percent(summary["pass@1_original_docstring"])),
        (
            "ratio generated / original",
            "n/a"
            if summary["ratio_generated_to_original"] is None
            else f"{summary['ratio_generated_to_original']:.2f}",
        ),
    ]
    if "pass@1_signature_only" in summary:
        rows.append(("pass@1, signature only", _percent(summary["pass@1_signature_only"])))
    rows.append(("mean docstring time", f"{summary['mean_docstring_s'] or 0:.1f} s"))
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 14)
    return "\n".join([line, *(f"{name:<{width}}  {value:>10}" for name, value in rows), line])


def write_results(
    out: Path, config: dict[str, Any], records: Sequence[TaskRecord], summary: dict[str, Any]
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(
        json.dumps(
            {"config": config, "summary": summary, "tasks": [asdict(r) for r in records]}, indent=2
        )
        + "\n"
    )
    return path
