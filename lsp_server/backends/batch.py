"""k samples of one prompt in one llama.cpp batch: the candidates of a tested suggestion.

Decoding one token costs about as much as reading the model's weights once; a batch of
k sequences reads them once per step for all k, so k samples cost far less than k
single decodes on a CPU (``ghostpilot bench batch`` measures it).

Design (decided here, documented in docs/ARCHITECTURE.md):

- The main context of :class:`~lsp_server.backends.llama.LlamaBackend` is created by
  llama-cpp-python with ``n_seq_max=1``. Batching gets a **second context** from the
  same ``llama_model`` (the weights are shared, not loaded again) with ``n_seq_max`` =
  :data:`MAX_SEQUENCES` and a unified KV cache (``kv_unified``): the k sequences share
  the prompt's KV cells (``llama_memory_seq_cp`` adds sequence ids to the cells, it
  copies nothing), and each sequence's own tokens take new cells. It is created on the
  first batch, sized to that request's ``prompt + k * max_tokens`` cells (made again,
  larger, only when a request needs more), and freed by :meth:`BatchContext.close`
  (``LlamaBackend.close`` calls it). Its memory is the KV cache of that many cells (the
  embedded model: about 18 KiB per cell, so 8 x 192 tokens and a 1,000-token prompt take
  about 45 MiB). The main context's LoRA adapter, if any, is set on it too. It gets no
  persistent threadpool: two polling pools on one machine's cores would take turns
  spinning.
- The prompt is **evaluated in the batch context** (not copied from the main one with
  ``llama_state_seq_get_data``): a copy costs a serialisation of the whole sequence
  state, while the batch context keeps its own last prompt and evaluates only the tokens
  after the longest common prefix, as the main context does. Requests for tested
  suggestions repeat the same prompt (the user asks again, or with another k), and then
  only the sampled tokens are decoded.
- Per step, one ``llama_decode`` for every live sequence; each sequence has its own
  :class:`~lsp_server.backends.sampler.Sampler` (seed ``seed + index``), its own text
  and UTF-8 decoder, and its own stop check (:func:`~lsp_server.backends.stops.check_stops`:
  stop strings, stop rule, time budget's cut). A sequence that ends drops out of the
  next batch, and its cells are freed. Cancellation is checked at every step.
"""

from __future__ import annotations

import codecs
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from lsp_server.backends.base import Cancelled, CancelToken, GenerationRequest, GenerationResult
from lsp_server.backends.kvcache import common_prefix
from lsp_server.backends.sampler import LogitViews, Sampler
from lsp_server.backends.stops import check_stops

log = logging.getLogger(__name__)

# The most sequences one batch decodes (the batch context's n_seq_max).
MAX_SEQUENCES = 32
# Prompt tokens per llama_decode while the prompt is evaluated.
PROMPT_CHUNK = 512


# Called with (sequence index, its result) as each sequence of a batch ends.
OnResult = Callable[[int, GenerationResult], None]


class TokenSource(Protocol):
    """What the batch needs of the backend: its vocabulary and ``ban_first`` rule."""

    def request_tokens(self, request: GenerationRequest) -> list[int]: ...

    def is_end(self, token: int) -> bool: ...

    def piece(self, token: int) -> bytes: ...

    def _avoid(
        self, token: int, logprob: float, logits: np.ndarray, sampler: Sampler, request: GenerationRequest
    ) -> tuple[int, float]: ...


@dataclass
class _Sequence:
    """One sample being drawn."""

    index: int
    sampler: Sampler
    decoder: Any
    text: str = ""
    count: int = 0
    logprob_sum: float = 0.0
    reason: str = "length"
    done: bool = False
    finished_at: float = 0.0
    row: int = -1  # its logits' row in the last decoded batch (-1: the prompt's last)
    tokens: list[int] = field(default_factory=list)


class BatchContext:
    """The second llama.cpp context of a loaded model, for batched sampling."""

    def __init__(self, llama_cpp: Any, llm: Any, n_threads: int, lora_adapter: Any = None) -> None:
        self._llama_cpp = llama_cpp
        self._llm = llm
        self._n_threads = n_threads
        # The LoRA adapter the main context applies (None: none); set on this context too,
        # or the candidates would come from the bare base model.
        self._lora_adapter = lora_adapter
        self._ctx: Any = None
        self._cells = 0
        self._batch: Any = None
        self._batch_size = 0
        self._cached: list[int] = []  # the prompt held by sequence 0
        self._threadpool: Any = None
        self.n_vocab = int(llm.n_vocab())
        self._logit_views = LogitViews(self.n_vocab)
        # The thread count the main context decodes with now (backends/threads.py); None:
        # the one it was created with.
        self.threads: int | None = None

    # -- lifetime -----------------------------------------------------------------------

    def _ensure(self, cells: int) -> None:
        if self._ctx is not None and self._cells >= cells:
            return
        self._free_context()
        llama_cpp = self._llama_cpp
        params = llama_cpp.llama_context_default_params()
        main = self._llm.context_params
        for name in ("n_threads", "n_threads_batch", "flash_attn_type", "swa_full", "type_k", "type_v",
                     "offload_kqv", "op_offload"):
            if hasattr(main, name) and hasattr(params, name):
                setattr(params, name, getattr(main, name))
        cells = -(-cells // 256) * 256
        params.n_ctx = cells
        params.n_batch = max(PROMPT_CHUNK, MAX_SEQUENCES)
        params.n_ubatch = max(PROMPT_CHUNK, MAX_SEQUENCES)
        params.n_seq_max = MAX_SEQUENCES
        params.kv_unified = True
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self._llm.model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not create a batch context of {cells} cells")
        if self._lora_adapter is not None:
            from lsp_server.backends.llama import set_lora_adapter

            if not set_lora_adapter(llama_cpp, ctx, self._lora_adapter):
                llama_cpp.llama_free(ctx)
                raise RuntimeError("llama.cpp could not apply the LoRA adapter to the batch context")
        self._ctx = ctx
        self._cells = int(llama_cpp.llama_n_ctx(ctx))
        self._cached = []
        log.info("batch context: %d cells, %d sequences", self._cells, MAX_SEQUENCES)

    def _ensure_batch(self, size: int) -> Any:
        if self._batch is None or self._batch_size < size:
            if self._batch is not None:
                self._llama_cpp.llama_batch_free(self._batch)
            self._batch_size = max(size, PROMPT_CHUNK)
            self._batch = self._llama_cpp.llama_batch_init(self._batch_size, 0, MAX_SEQUENCES)
        return self._batch

    def _free_context(self) -> None:
        if self._threadpool is not None:
            self._threadpool.close()
            self._threadpool = None
        if self._ctx is not None:
            self._llama_cpp.llama_free(self._ctx)
            self._ctx = None
            self._cells = 0
            self._cached = []

    def close(self) -> None:
        """Free the context, its threadpool and the batch (before the model is freed)."""
        self._free_context()
        if self._batch is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None
            self._batch_size = 0

    # -- decoding -----------------------------------------------------------------------

    def _decode(self, entries: Sequence[tuple[int, int, Sequence[int], bool]]) -> None:
        """One llama_decode of ``(token, position, sequence ids, wants logits)`` entries."""
        batch = self._ensure_batch(len(entries))
        for slot, (token, position, seqs, logits) in enumerate(entries):
            batch.token[slot] = token
            batch.pos[slot] = position
            batch.n_seq_id[slot] = len(seqs)
            for j, seq in enumerate(seqs):
                batch.seq_id[slot][j] = seq
            batch.logits[slot] = logits
        batch.n_tokens = len(entries)
        status = self._llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed ({status}) in the batch context")

    def _logits(self, row: int) -> np.ndarray:
        return self._logit_views.of(self._llama_cpp.llama_get_logits_ith(self._ctx, row))

    def _prompt(self, tokens: list[int], cancel: CancelToken) -> tuple[int, int]:
        """Sequence 0 holds ``tokens`` afterwards, every other sequence nothing; returns
        (reused, evaluated) prompt token counts."""
        memory = self._llama_cpp.llama_get_memory(self._ctx)
        for seq in range(1, MAX_SEQUENCES):
            self._llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
        reused = min(common_prefix(self._cached, tokens), len(tokens) - 1)
        self._llama_cpp.llama_memory_seq_rm(memory, 0, reused, -1)
        self._cached = self._cached[:reused]
        pending = tokens[reused:]
        for start in range(0, len(pending), PROMPT_CHUNK):
            if cancel.cancelled:
                raise Cancelled(cancel.reason)
            piece = pending[start : start + PROMPT_CHUNK]
            last = start + len(piece) == len(pending)
            self._decode([
                (token, reused + start + i, (0,), last and i == len(piece) - 1)
                for i, token in enumerate(piece)
            ])  # fmt: skip
            self._cached.extend(piece)
        return reused, len(pending)

    def sample(
        self, source: TokenSource, request: GenerationRequest, k: int, cancel: CancelToken,
        on_result: OnResult | None = None,
    ) -> list[GenerationResult]:
        """``k`` samples of ``request`` (seeds ``seed``, ``seed + 1``...), in one batch.
        ``on_result(index, result)`` is called as each sequence ends (they end at
        different lengths), so its result can be used before the batch is done."""
        if not 1 <= k <= MAX_SEQUENCES:
            raise ValueError(f"a batch draws 1 to {MAX_SEQUENCES} samples, not {k}")
        started = time.perf_counter()
        tokens = source.request_tokens(request)
        self._ensure(len(tokens) + k * max(1, request.max_tokens) + 1)
        if self.threads is not None:
            self._llama_cpp.llama_set_n_threads(self._ctx, self.threads, self.threads)
        reused, evaluated = self._prompt(tokens, cancel)
        prompt_done = time.perf_counter()
        memory = self._llama_cpp.llama_get_memory(self._ctx)
        for seq in range(1, k):
            self._llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        seed = request.seed if request.seed is not None else int(np.random.default_rng().integers(2**31))
        sequences = [
            _Sequence(i, Sampler(request.temperature, request.top_p, np.random.default_rng(seed + i)),
                      codecs.getincrementaldecoder("utf-8")(errors="replace"))
            for i in range(k)
        ]  # fmt: skip
        prompt_logits = self._logits(-1).copy()
        max_tokens = min(request.max_tokens, (self._cells - len(tokens)) // k - 1)
        position = len(tokens)
        live = list(sequences)
        while live:
            if cancel.cancelled:
                raise Cancelled(cancel.reason)
            entries = []
            still = []
            for sequence in live:
                logits = prompt_logits if sequence.row < 0 else self._logits(sequence.row)
                if self._step(source, request, sequence, logits, started, max_tokens):
                    still.append(sequence)
                    entries.append((sequence.tokens[-1], position, (sequence.index,), True))
                else:
                    sequence.finished_at = time.perf_counter()
                    if sequence.index:
                        self._llama_cpp.llama_memory_seq_rm(memory, sequence.index, len(tokens), -1)
                    if on_result is not None:
                        on_result(sequence.index, self._result(sequence, tokens, reused, evaluated, started,
                                                               prompt_done))
            live = still
            if not live:
                break
            self._decode(entries)
            for row, sequence in enumerate(live):
                sequence.row = row
            position += 1
        self._llama_cpp.llama_memory_seq_rm(memory, 0, len(tokens), -1)
        return [self._result(s, tokens, reused, evaluated, started, prompt_done) for s in sequences]

    def _step(
        self,
        source: TokenSource,
        request: GenerationRequest,
        sequence: _Sequence,
        logits: np.ndarray,
        started: float,
        max_tokens: int,
    ) -> bool:
        """Choose ``sequence``'s next token; whether it goes on (and needs decoding)."""
        if sequence.count >= max_tokens:
            sequence.text += sequence.decoder.decode(b"", final=True)
            return False
        token, logprob = sequence.sampler.choose(logits, logprob=request.logprobs)
        if request.ban_first and not sequence.text.strip():
            token, logprob = source._avoid(token, logprob, logits, sequence.sampler, request)
        if source.is_end(token) or token in request.stop_token_ids:
            sequence.reason = "eos"
            return False
        sequence.count += 1
        sequence.logprob_sum += logprob
        sequence.text += sequence.decoder.decode(source.piece(token))
        cut, reason = check_stops(sequence.text, request, started)
        if cut is not None:
            sequence.text = sequence.text[:cut]
            sequence.reason = reason
            return False
        sequence.tokens.append(token)
        return True

    @staticmethod
    def _result(
        sequence: _Sequence, tokens: list[int], reused: int, evaluated: int, started: float, prompt_done: float
    ) -> GenerationResult:
        finished = sequence.finished_at or time.perf_counter()
        return GenerationResult(
            text=sequence.text,
            token_count=sequence.count,
            logprob_sum=sequence.logprob_sum,
            prompt_tokens=len(tokens),
            reused_tokens=reused,
            evaluated_tokens=evaluated,
            prompt_eval_s=prompt_done - started,
            decode_s=finished - prompt_done,
            total_s=finished - started,
            stop_reason=sequence.reason,
        )


def sample_k(
    backend: Any, request: GenerationRequest, k: int, cancel: CancelToken, on_result: OnResult | None = None
) -> list[GenerationResult]:
    """``k`` samples of ``request`` (seeds ``seed + i``): one batch where the backend has
    ``sample_batch`` (the local model), else one request after another (a remote engine).
    ``on_result(i, result)`` is called as each sample is done."""
    batched = getattr(backend, "sample_batch", None)
    if batched is not None:
        out: list[GenerationResult] = []
        while len(out) < k:  # more than one batch holds: several batches
            size = min(MAX_SEQUENCES, k - len(out))
            seed = None if request.seed is None else request.seed + len(out)
            offset = len(out)
            done = None if on_result is None else (lambda i, r: on_result(offset + i, r))  # noqa: B023
            out.extend(batched(replace(request, seed=seed), size, cancel, done))
        return out
    base = request.seed if request.seed is not None else int(np.random.default_rng().integers(2**31))
    results = []
    for i in range(k):
        results.append(backend.generate(replace(request, seed=base + i), cancel))
        if on_result is not None:
            on_result(i, results[-1])
    return results
