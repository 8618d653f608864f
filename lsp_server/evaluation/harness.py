"""The evaluation loop: sample completions, run each in the sandbox, record, summarise.

Generation runs on the calling thread (one model, one worker); the sandboxed checks of
finished samples run on ``workers`` threads at the same time. Every finished sample
is appended to the run's JSONL at once, so an interrupted run resumes without redoing
anything that finished.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from lsp_server.evaluation import doctests
from lsp_server.evaluation.passk import pass_at_k, pass_at_ks
from lsp_server.evaluation.progress import Progress
from lsp_server.evaluation.sampling import Sample, Sampler, sample_seed
from lsp_server.evaluation.store import RunStore
from lsp_server.evaluation.tasks import Task, check_program
from lsp_server.evaluation.tasks import passed as tasks_passed
from lsp_server.sandbox import SandboxLimits, isolation_available, run_python
from lsp_server.tested import Candidate, Evidence, rank_key, test_candidates
from lsp_server.tested.checks import examples_only
from lsp_server.tested.rank import code_key

RANKS = ("none", "logprob", "doctest")


@dataclass(frozen=True)
class EvalConfig:
    benchmark: str
    model: str
    n: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    ks: tuple[int, ...] = (1, 10, 100)
    rank: str = "none"
    timeout_s: float = 10.0
    max_tokens: int | None = None
    workers: int = 2
    limit: int | None = None
    # Single-line infilling: keep the first non-blank line of each suggestion.
    first_line_only: bool = False

    def __post_init__(self) -> None:
        if self.rank not in RANKS:
            raise ValueError(f"--rank must be one of {', '.join(RANKS)}")
        if self.n < 1:
            raise ValueError("--n must be at least 1")
        if self.rank == "none" and self.temperature == 0 and self.n != 1:
            raise ValueError("greedy decoding (temperature 0) gives one sample per task: use "
                             "--n 1, or a temperature above 0 for pass@k with k > 1")
        if self.rank != "none" and self.temperature <= 0:
            raise ValueError("ranking needs samples drawn with a temperature above 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("--top-p must be in (0, 1]")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError("--k needs positive integers")
        if self.workers < 1:
            raise ValueError("--workers must be at least 1")

    @property
    def wants_greedy(self) -> bool:
        return self.temperature == 0 or self.rank != "none"

    @property
    def sample_count(self) -> int:
        return 0 if self.temperature == 0 and self.rank == "none" else self.n

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ks"] = list(self.ks)
        return data


@dataclass
class TaskPlan:
    task: Task
    greedy: bool
    sample_indices: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.greedy) + len(self.sample_indices)


def plan(tasks: Sequence[Task], config: EvalConfig,
         finished: Iterable[dict[str, Any]]) -> list[TaskPlan]:
    """What is left to do for each task, given the records already finished."""
    done = {(r["task_id"], r["kind"], r["index"]) for r in finished}
    plans = []
    for task in tasks:
        greedy = config.wants_greedy and (task.task_id, "greedy", 0) not in done
        indices = [i for i in range(config.sample_count)
                   if (task.task_id, "sample", i) not in done]
        if greedy or indices:
            plans.append(TaskPlan(task, greedy, indices))
    return plans


def first_line(sample: Sample) -> Sample:
    """The sample cut to its first line with code (single-line infilling protocol)."""
    lines = sample.text.split("\n")
    kept = next((line for line in lines if line.strip()), "")
    return Sample(**{**asdict(sample), "text": kept})


def execute(task: Task, kind: str, index: int, sample: Sample, config: EvalConfig,
            evidence: Evidence | None = None) -> dict[str, Any]:
    """Check one sample's hidden tests in the sandbox; ``evidence`` is what the tested
    pipeline found it passes of the docstring's examples (``--rank doctest``)."""
    filled = sample.apply(task.document_text)
    limits = SandboxLimits(timeout_s=config.timeout_s, output_limit_kb=64)
    nonce = secrets.token_hex(16)
    result = run_python(check_program(filled, task, nonce), limits=limits)
    ok = tasks_passed(result.returncode, result.stdout, nonce)
    status = result.status if ok or result.status != "passed" else "failed"
    record: dict[str, Any] = {
        "task_id": task.task_id, "kind": kind, "index": index, **sample.to_json(),
        "status": status, "passed": ok,
        "reason": result.reason or ("" if ok else "exited before the checks finished"
                                    if result.status == "passed" else ""),
        "error": _last_line(result.stderr) if not ok else "",
        "exec_s": round(result.duration_s, 4), "isolation": result.isolation,
    }
    if evidence is not None:
        record["doctest"] = {"passed": evidence.passes_all, "attempted": evidence.total,
                             "failed": evidence.total - evidence.passed,
                             "evidence": evidence.to_json()}
    return record


def tested_evidence(task: Task, samples: Sequence[Sample], config: EvalConfig,
                    examples: Sequence[doctests.Example]) -> list[Evidence | None]:
    """Each sample's evidence from :func:`lsp_server.tested.test_candidates`, the very
    function the editor's tested suggestions call (samples with the same code, formatting
    aside, share one run)."""
    if not examples:
        return [None] * len(samples)
    document = task.document_text
    candidates = [Candidate(s.text, s.start, s.end, s.mean_logprob, i) for i, s in enumerate(samples)]
    outcome = test_candidates(document, candidates, examples_only(task.entry_point, examples),
                              timeout_s=config.timeout_s, workers=config.workers)
    found = {code_key(document, c): c.evidence for c in outcome.candidates}
    return [found.get(code_key(document, c)) if c.text.strip() else None for c in candidates]


def run(tasks: Sequence[Task], config: EvalConfig, sampler: Sampler, store: RunStore,
        *, resume: bool = False, progress: bool = True,
        log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> list[dict[str, Any]]:
    """Do what is left of the run; returns every record, old and new."""
    tasks = list(tasks)[: config.limit] if config.limit else list(tasks)
    records = store.open(_run_config(config, sampler), resume=resume)
    records = [r for r in records if r["task_id"] in {t.task_id for t in tasks}]
    todo = plan(tasks, config, records)
    bar = Progress(sum(p.count for p in todo), f"{config.benchmark}", enabled=progress)
    if resume and records:
        log(f"resuming: {len(records)} samples already done, {bar.total} to go")
    lock = threading.Lock()
    passed = [sum(bool(r.get("passed")) for r in records)]

    def finish(future: Future[dict[str, Any]]) -> None:
        try:
            record = future.result()
        except Exception as error:  # a sandbox bug must not lose the rest of the run
            log(f"sample check failed: {error!r}")
            return
        store.append(record)
        with lock:
            records.append(record)
            passed[0] += bool(record["passed"])
            bar.advance(note=f"{passed[0]} passed")

    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        for item in todo:
            task = item.task
            docstring = doctests.function_docstring(task.prompt, task.entry_point)
            examples = doctests.examples(docstring, task.entry_point) \
                if config.rank == "doctest" else []
            drawn = _generate(item, config, sampler, log)
            if config.first_line_only:
                drawn = [(kind, index, first_line(sample)) for kind, index, sample in drawn]
            samples = [sample for kind, _, sample in drawn if kind == "sample"]
            evidence = iter(tested_evidence(task, samples, config, examples)
                            if config.rank == "doctest" else [None] * len(samples))
            for kind, index, sample in drawn:
                found = next(evidence) if kind == "sample" else None
                pool.submit(execute, task, kind, index, sample, config, found).add_done_callback(finish)
    return records


def _generate(item: TaskPlan, config: EvalConfig, sampler: Sampler,
              log: Callable[[str], None]) -> list[tuple[str, int, Sample]]:
    task = item.task
    text, cursor = task.document_text, task.cursor
    out: list[tuple[str, int, Sample]] = []
    try:
        if item.greedy:
            out.append(("greedy", 0, sampler.greedy(text, cursor)))
        if item.sample_indices:
            seeds = [sample_seed(task.task_id, i) for i in item.sample_indices]
            drawn = sampler.sample(text, cursor, seeds=seeds, temperature=config.temperature,
                                   top_p=config.top_p)
            out += [("sample", i, s) for i, s in zip(item.sample_indices, drawn)]
    except Exception as error:
        if type(error).__name__ in ("ModelUnavailable", "KeyboardInterrupt"):
            raise
        log(f"{task.task_id}: generation failed: {error!r}")
        empty = Sample("", cursor, cursor, stop_reason=f"error: {error}")
        kinds = ([("greedy", 0)] if item.greedy else []) + [("sample", i) for i in item.sample_indices]
        have = {(k, i) for k, i, _ in out}
        out += [(k, i, empty) for k, i in kinds if (k, i) not in have]
    return out


def _run_config(config: EvalConfig, sampler: Sampler) -> dict[str, Any]:
    data = config.to_json()
    data["model_name"] = sampler.model_name
    data["isolation"] = isolation_available()
    return data


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# --- summary ---------------------------------------------------------------------------


def _choose(samples: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    return max(samples, key=lambda r: (key(r), -r["index"]))


def _logprob(record: dict[str, Any]) -> float:
    value = record.get("mean_logprob")
    return float("-inf") if value is None else float(value)


def doctest_choice(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The tested pick: the editor's ranking (:func:`lsp_server.tested.rank_key`: passes
    all the docstring's examples, then the most, then mean log-probability)."""
    def score(record: dict[str, Any]) -> tuple[int, int, float]:
        check = record.get("doctest") or {}
        if "evidence" in check:
            return rank_key(Evidence.from_json(check["evidence"]), _logprob(record))
        attempted, failed = check.get("attempted", 0), check.get("failed", 0)  # older runs
        return (int(bool(check.get("passed"))), attempted - failed, _logprob(record))

    return _choose(samples, score)


def summarize(records: Sequence[dict[str, Any]], config: EvalConfig) -> dict[str, Any]:
    """pass@k, greedy pass@1 and the ranked pass@1 figures from the run's records."""
    by_task: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_task[record["task_id"]][record["kind"]].append(record)
    tasks = sorted(by_task)
    summary: dict[str, Any] = {"tasks": len(tasks), "samples": len(records)}
    if not tasks:
        return summary
    status_counts: dict[str, int] = defaultdict(int)
    for record in records:
        status_counts[record["status"]] += 1
    summary["status_counts"] = dict(sorted(status_counts.items()))
    pool = "sample" if config.sample_count else "greedy"
    counts = {}
    for task_id in tasks:
        drawn = by_task[task_id][pool]
        if drawn:
            counts[task_id] = (len(drawn), sum(bool(r["passed"]) for r in drawn))
    summary["pass_at_k"] = {str(k): v for k, v in pass_at_ks(counts, config.ks).items()}
    summary["pass_at_k_curve"] = {str(k): v for k, v in
                                  pass_at_ks(counts, range(1, config.n + 1)).items()} \
        if config.sample_count else {}
    greedy = [by_task[t]["greedy"][0] for t in tasks if by_task[t]["greedy"]]
    if greedy:
        summary["greedy_pass_at_1"] = sum(bool(r["passed"]) for r in greedy) / len(greedy)
    if config.rank != "none":
        sampled = {t: by_task[t]["sample"] for t in tasks if by_task[t]["sample"]}
        ranked = {"random (unbiased pass@1)": [pass_at_k(len(s), sum(bool(r["passed"]) for r in s), 1)
                                              for s in sampled.values()],
                  "mean log-prob": [float(bool(_choose(s, _logprob)["passed"]))
                                    for s in sampled.values()]}
        if config.rank == "doctest":
            ranked["doctest, then log-prob"] = [float(bool(doctest_choice(s)["passed"]))
                                               for s in sampled.values()]
            for k in sorted(set(config.ks)):  # the editor's pick with fewer candidates
                first = [[r for r in s if r["index"] < k] for s in sampled.values()]
                if 1 < k < config.n and all(len(f) == k for f in first):
                    ranked[f"tested pick, first {k} samples"] = [
                        float(bool(doctest_choice(f)["passed"])) for f in first]
            with_examples = [t for t, s in sampled.items() if any("doctest" in r for r in s)]
            summary["tasks_with_examples"] = len(with_examples)
        ranked[f"oracle (pass@{config.n})"] = [float(any(r["passed"] for r in s))
                                               for s in sampled.values()]
        summary["ranked_pass_at_1"] = {name: sum(v) / len(v) for name, v in ranked.items() if v}
    generated = [r for r in records if r.get("token_count")]
    if generated:
        tokens = sum(r["token_count"] for r in generated)
        seconds = sum(r.get("gen_s", 0.0) for r in generated)
        summary["mean_tokens"] = tokens / len(generated)
        summary["mean_gen_s"] = seconds / len(generated)
    return summary
