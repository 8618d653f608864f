"""Getting completions for a benchmark task through the product's own code path.

:class:`EngineSampler` builds a :class:`~lsp_server.parsing.document.Document` from the
task's text and asks the :class:`~lsp_server.engine.CompletionEngine` for a suggestion at
the cursor, exactly as the language server does for an editor. The harness only sees
the :class:`Sampler` protocol, so unit tests can give it a stand-in.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Protocol

# The Codex paper's stop sequences; the engine applies them at the function's indent.
CODEX_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


@dataclass(frozen=True)
class Sample:
    """One completion: ``text`` replaces ``document[start:end]`` (code points)."""

    text: str
    start: int
    end: int
    mean_logprob: float = float("-inf")
    token_count: int = 0
    stop_reason: str = ""
    gen_s: float = 0.0
    prompt_tokens: int = 0
    evaluated_tokens: int = 0

    def apply(self, document_text: str) -> str:
        return document_text[: self.start] + self.text + document_text[self.end :]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["mean_logprob"] == float("-inf"):
            data["mean_logprob"] = None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if values.get("mean_logprob") is None:
            values["mean_logprob"] = float("-inf")
        return cls(**values)


class Sampler(Protocol):
    model_name: str

    def greedy(self, text: str, cursor: int) -> Sample: ...

    def sample(self, text: str, cursor: int, *, seeds: list[int], temperature: float,
               top_p: float) -> list[Sample]:
        """One sample per seed (seeds make a run reproducible and resumable)."""
        ...


class NoSampler:
    """For a resumed run with nothing left to generate: never loads a model."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def greedy(self, text: str, cursor: int) -> Sample:
        raise RuntimeError("nothing left to generate")

    def sample(self, text: str, cursor: int, *, seeds: list[int], temperature: float,
               top_p: float) -> list[Sample]:
        raise RuntimeError("nothing left to generate")


def sample_seed(task_id: str, index: int) -> int:
    """A fixed seed per (task, sample index): reruns and resumed runs draw the same."""
    return (zlib.crc32(task_id.encode("utf-8")) * 1009 + index) % (2**31 - 1)


def auto_temperature(n: int) -> float:
    """Codex: the best temperature grows with the number of samples drawn
    (0.2 for pass@1, 0.8 for pass@100). Greedy for a single sample."""
    if n <= 1:
        return 0.0
    if n <= 10:
        return 0.6
    return 0.8


def _from_suggestion(suggestion: Any, cursor: int, gen_s: float) -> Sample:
    if suggestion is None:
        return Sample("", cursor, cursor, stop_reason="none", gen_s=gen_s)
    result = getattr(suggestion, "result", None)
    return Sample(
        text=suggestion.text,
        start=suggestion.start,
        end=suggestion.end,
        mean_logprob=float(getattr(result, "mean_logprob", float("-inf"))),
        token_count=int(getattr(result, "token_count", 0)),
        stop_reason=str(getattr(result, "stop_reason", "")),
        gen_s=gen_s,
        prompt_tokens=int(getattr(result, "prompt_tokens", 0)),
        evaluated_tokens=int(getattr(result, "evaluated_tokens", 0)),
    )


class EngineSampler:
    """Completions from the real :class:`CompletionEngine` with a loaded model.

    ``mode`` forces the engine's completion mode ("line" for single-line infilling);
    by default the engine decides from the syntax tree, as it does in the editor.
    """

    def __init__(self, engine: Any, model_name: str, *, max_tokens: int | None = None,
                 mode: str | None = None) -> None:
        self.engine = engine
        self.model_name = model_name
        self.max_tokens = max_tokens
        self.mode = mode

    @staticmethod
    def _document(text: str) -> Any:
        from lsp_server.parsing.document import Document

        return Document(uri="file:///ghostpilot-eval/task.py", text=text, version=1,
                        language_id="python")

    def _overrides(self) -> dict[str, object]:
        overrides: dict[str, object] = {}
        if self.max_tokens is not None:
            overrides["max_tokens"] = self.max_tokens
        if self.mode is not None:
            overrides["mode"] = self.mode
        return overrides

    def greedy(self, text: str, cursor: int) -> Sample:
        started = time.perf_counter()
        suggestion = self.engine.complete_blocking(self._document(text), cursor, explicit=True,
                                                   overrides=self._overrides())
        return _from_suggestion(suggestion, cursor, time.perf_counter() - started)

    def sample(self, text: str, cursor: int, *, seeds: list[int], temperature: float,
               top_p: float) -> list[Sample]:
        document = self._document(text)
        if self.mode in (None, "block") and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
            # Consecutive seeds (a task's samples): one batch, as the editor draws them.
            from lsp_server.engine import Overrides

            started = time.perf_counter()
            drawn = self.engine.candidates_blocking(
                document, cursor, k=len(seeds),
                overrides=Overrides("block", self.max_tokens, temperature, top_p, seeds[0]))
            per_sample = (time.perf_counter() - started) / max(1, len(drawn))
            return [_from_suggestion(s if s.text else None, cursor, per_sample) for s in drawn]
        samples = []
        for seed in seeds:
            started = time.perf_counter()
            drawn = self.engine.sample_blocking(
                document, cursor, n=1, temperature=temperature, top_p=top_p,
                max_tokens=self.max_tokens, mode=self.mode, seed=seed)
            suggestion = drawn[0] if drawn and drawn[0].text else None
            samples.append(_from_suggestion(suggestion, cursor, time.perf_counter() - started))
        return samples


def load_engine_sampler(model: str | None, *, max_tokens: int, n_threads: int | None = None,
                        n_ctx: int | None = None, mode: str | None = None,
                        n_gpu_layers: int | None = None) -> EngineSampler:
    """Load ``model`` (a path or registry name; the embedded one by default) into a
    model worker and wrap the product's engine around it. Raises ``ModelUnavailable``."""
    from lsp_server.backends.base import ModelUnavailable
    from lsp_server.config import Settings, merge
    from lsp_server.engine import CompletionEngine
    from lsp_server.runtime import start_worker

    raw = {"model": model, "maxTokens": max_tokens, "nThreads": n_threads, "nCtx": n_ctx,
           "nGpuLayers": n_gpu_layers,
           # Evaluation measures what the model writes, not how much fits in a keystroke.
           "timeBudgetMs": 60000}
    settings, problems = merge(Settings(), {k: v for k, v in raw.items() if v is not None})
    if problems:
        raise ModelUnavailable("; ".join(problems))
    worker = start_worker(settings)
    engine = CompletionEngine(worker, lambda: settings)
    name = worker.info.name if worker.info is not None else settings.model
    return EngineSampler(engine, name, max_tokens=max_tokens, mode=mode)
