"""What a model backend is asked for and what it answers.

The server, the CLI and the evaluation harness all speak these types; only
``backends/llama.py`` knows about llama.cpp. Nothing here knows how prompts are built:
rules that need prompt knowledge (where to stop, where to cut once time is up) come in
with the request as plain callables.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# A stop rule looks at the text generated so far and returns the index at which to
# cut it and stop, or None to go on.
StopRule = Callable[[str], "int | None"]


@dataclass(frozen=True)
class TimeBudget:
    """Once ``seconds`` have passed since generation began, ``cut`` (a stop rule the
    caller builds, such as "after the last complete line") decides where to stop; once
    ``hard_seconds`` have (None: never), generation stops where it is, cut or not."""

    seconds: float
    cut: StopRule
    hard_seconds: float | None = None


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
    time_budget: TimeBudget | None = None
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
    # "stop", "length", "eos", "rule" (stop_rule), "time" (time_budget), "repetition" (a loop)
    stop_reason: str = "length"

    @property
    def mean_logprob(self) -> float:
        return self.logprob_sum / self.token_count if self.token_count else float("-inf")

    @property
    def decode_tokens_per_s(self) -> float:
        return self.token_count / self.decode_s if self.decode_s > 0 else 0.0


@dataclass(frozen=True)
class FimTokens:
    """A fill-in-the-middle template as the model's token ids."""

    prefix: int
    suffix: int
    middle: int
    # Tokens that end a fill (end of text, file separators, stray markers).
    stops: frozenset[int]
    # "psm": prefix, suffix, middle. "spm": suffix, prefix, middle.
    order: str = "psm"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    # The FIM template's name (for messages), None where the model has no FIM.
    fim_template: str | None
    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    # Token ids a prompt starts with (the BOS token, where the model wants one).
    bos: tuple[int, ...] = ()
    # The FIM markers as token ids; None for prefix-only prompts.
    fim: FimTokens | None = None
    # Where the layers run ("19/19 layers on CUDA0 (NVIDIA H200, ...)", "CPU only ...");
    # "" for a remote engine. ``offload_warning``: nGpuLayers asked for a GPU that the
    # build or the machine lacks (the model runs on the CPU; the server says so once).
    offload: str = ""
    offload_warning: str = ""


class Backend(Protocol):
    """A loaded model: what the model worker, and through it the engine, needs of one.

    :class:`~lsp_server.backends.llama.LlamaBackend` runs llama.cpp in this process; a
    backend that talks to a server (llama-server, vLLM, Ollama) implements the same four
    members. Only the :class:`~lsp_server.backends.worker.ModelWorker`'s thread calls
    them, one at a time, so a backend needs no locking of its own.

    - ``info``: fixed once loaded. ``n_ctx`` is the context the server really gives (the
      engine fits every prompt into ``n_ctx - max_tokens``); ``bos`` the ids a prompt
      starts with; ``fim`` the FIM markers as ids, or None where the model has none or
      the backend cannot take prompts as token ids (the engine then sends prefix-only
      prompts). :mod:`~lsp_server.backends.fim` finds the template from GGUF metadata
      and maps its markers to ids with ``tokenize``. ``path`` is the file or URL;
      ``n_threads`` and ``n_gpu_layers`` are 0 where the backend does not set them.
    - ``tokenize(text, special=...)``: the model's own token ids, with no BOS;
      ``special`` parses control-token text (``<fim_prefix>``) as control tokens. The
      engine counts prompt budgets with it and caches tokens line by line.
    - ``generate(request, cancel)``: evaluate ``request.prompt_tokens`` as given (else
      ``bos`` + the tokens of ``request.prompt``, control tokens parsed when
      ``special``) and sample up to ``max_tokens``. After each token, cut the text at
      the first ``stop`` string, else where ``stop_rule`` says, else, once
      ``time_budget.seconds`` have passed, where its ``cut`` says; end on EOS or a
      ``stop_token_ids`` token. Check ``cancel`` between tokens and raise
      :class:`Cancelled` when it is set. Honour ``ban_first``, ``temperature``,
      ``top_p``, ``seed`` and ``logprobs``, or document which the server cannot do.
      Callers fit prompts to the budget; one longer than ``n_ctx - max_tokens`` is a
      caller's bug (LlamaBackend keeps its newest tokens; a remote backend may raise).
      Report counts, timings and ``stop_reason`` in :class:`GenerationResult`; raise
      :class:`ModelUnavailable` when the model cannot be reached.
    - ``close()``: free the model (memory, threads, connections); the worker calls it
      before loading another. Nothing is called after it.
    """

    info: ModelInfo

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult: ...

    def close(self) -> None: ...
