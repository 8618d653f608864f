"""What a model backend is asked for and what it answers.

The server, the CLI and the evaluation harness all speak these types; only
``backends/llama.py`` knows about llama.cpp.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# A stop rule looks at the text generated so far and returns the index at which to
# cut it and stop, or None to go on.
StopRule = Callable[[str], "int | None"]


class Cancelled(Exception):
    """Generation was stopped because a newer request superseded it or it was cancelled."""


class ModelUnavailable(RuntimeError):
    """The model could not be loaded; the message says why and what to do."""


@dataclass
class CancelToken:
    """Set by whoever wants a generation stopped; checked between tokens."""

    event: threading.Event = field(default_factory=threading.Event)
    reason: str = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self.event.set()

    @property
    def cancelled(self) -> bool:
        return self.event.is_set()


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    # Token ids to evaluate instead of tokenizing ``prompt`` (the engine always builds them:
    # its tokenizer caches them line by line, and FIM prompts are built as ids).
    prompt_tokens: tuple[int, ...] | None = None
    # Token ids that end generation (a FIM template's end-of-fill tokens).
    stop_token_ids: frozenset[int] = frozenset()
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 0.95
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_rule: StopRule | None = None
    # After this many seconds, stop as soon as one complete line is out.
    time_budget_s: float | None = None
    # Whether the prompt holds special tokens (FIM templates) to be parsed as such.
    special: bool = False
    # Whether to sum log-probabilities (for ranking samples); greedy editor requests skip it.
    logprobs: bool = False
    # Until the first non-blank text is out, no token may start (after blanks) with one of
    # these: a block's first line must be code, not "# TODO" (see the engine).
    ban_first: tuple[str, ...] = ()


@dataclass
class GenerationResult:
    text: str
    token_count: int = 0
    # Sum of log-probabilities of the generated tokens (for ranking samples).
    logprob_sum: float = 0.0
    prompt_tokens: int = 0
    # Prompt tokens whose KV-cache entries were reused from the previous request.
    reused_tokens: int = 0
    # Prompt tokens that had to be evaluated for this request.
    evaluated_tokens: int = 0
    prompt_eval_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0
    stop_reason: str = "length"  # "stop", "length", "eos", "rule", "time"

    @property
    def mean_logprob(self) -> float:
        return self.logprob_sum / self.token_count if self.token_count else float("-inf")

    @property
    def decode_tokens_per_s(self) -> float:
        return self.token_count / self.decode_s if self.decode_s > 0 else 0.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    fim_template: str | None
    n_ctx: int
    n_threads: int
    n_gpu_layers: int


class Backend(Protocol):
    """A loaded model. Not thread-safe: :class:`~lsp_server.backends.worker.ModelWorker` owns it."""

    info: ModelInfo

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult: ...
