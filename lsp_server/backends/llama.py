"""The llama.cpp backend: the only module that touches llama-cpp-python.

Generation is our own token loop over ``Llama.eval`` so that we can:
- reuse the KV cache for the longest common token prefix with the previous request
  (typing a character re-evaluates only the tokens after it),
- stop between tokens when a newer request supersedes this one,
- apply stop strings, a stop rule and a time budget as text streams out,
- sum log-probabilities for ranking samples.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsp_server.backends.base import (
    Cancelled,
    CancelToken,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelUnavailable,
)
from lsp_server.backends.gguf import GGUFError, GGUFHeader, read_header
from lsp_server.prompts.fim import FimTemplate, FimTokens, detect_template, resolve_tokens
from lsp_server.prompts.postprocess import complete_line_cut

log = logging.getLogger(__name__)


def _import_llama():  # type: ignore[no-untyped-def]
    try:
        import llama_cpp
    except ImportError as error:  # pragma: no cover - install problem
        raise ModelUnavailable(
            f"llama-cpp-python is not installed ({error}); run the README's install command"
        ) from error
    return llama_cpp


def system_info() -> dict[str, object]:
    """What this llama.cpp build supports: SIMD features and GPU offload."""
    llama_cpp = _import_llama()
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    features = {}
    for part in info.replace("|", "\n").splitlines():
        if "=" in part:
            key, _, value = part.partition("=")
            features[key.strip().split(":")[-1].strip()] = value.strip()
    return {
        "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "features": features,
        "raw": info.strip(),
    }


class Threadpool:
    """A persistent ggml CPU threadpool attached to a llama.cpp context.

    Without one, llama.cpp creates and joins a fresh pool of threads for every graph it
    computes, i.e. for every generated token; its threads do not poll between tokens.
    llama-server and llama-bench attach a pool. On 2 cores: decode 0.95 -> 0.99 of
    llama-bench; beside another llama.cpp process, about 3 -> 22 tokens/s; beside a
    plain busy loop, no difference. (On macOS/Windows the library names differ and the
    pool is skipped.)

    The binding needs no struct layout: ``ggml_threadpool_params_init`` fills an opaque
    buffer that is handed back to ``ggml_threadpool_new`` (default polling, all cores).
    """

    _PARAMS_BYTES = 4096  # ggml_threadpool_params is ~530 bytes; room for growth

    def __init__(self, llama_cpp: object, ctx: object, n_threads: int) -> None:
        folder = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")  # type: ignore[attr-defined]
        base = ctypes.CDLL(os.path.join(folder, "libggml-base.so"))
        cpu = ctypes.CDLL(os.path.join(folder, "libggml-cpu.so"))
        lib = llama_cpp.llama_cpp._lib  # type: ignore[attr-defined]
        base.ggml_threadpool_params_init.argtypes = [ctypes.c_void_p, ctypes.c_int]
        base.ggml_threadpool_params_init.restype = None
        cpu.ggml_threadpool_new.argtypes = [ctypes.c_void_p]
        cpu.ggml_threadpool_new.restype = ctypes.c_void_p
        cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
        cpu.ggml_threadpool_free.restype = None
        lib.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.llama_attach_threadpool.restype = None
        lib.llama_detach_threadpool.argtypes = [ctypes.c_void_p]
        lib.llama_detach_threadpool.restype = None
        params = ctypes.create_string_buffer(self._PARAMS_BYTES)
        base.ggml_threadpool_params_init(params, n_threads)
        pool = cpu.ggml_threadpool_new(params)
        if not pool:
            raise RuntimeError("ggml_threadpool_new failed")
        self._cpu, self._lib, self._ctx, self._pool = cpu, lib, ctx, pool
        lib.llama_attach_threadpool(ctx, pool, pool)

    def close(self) -> None:
        """Detach (llama.cpp goes back to its own pools) and free the threads."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        self._lib.llama_detach_threadpool(self._ctx)
        self._cpu.ggml_threadpool_free(pool)


def attach_threadpool(llama_cpp: object, ctx: object, n_threads: int) -> Threadpool | None:
    """A pool for ``ctx``, or None where this llama.cpp build does not offer one (or
    ``GHOSTPILOT_THREADPOOL=0`` turns it off, to compare)."""
    if os.environ.get("GHOSTPILOT_THREADPOOL", "1") == "0":
        return None
    try:
        return Threadpool(llama_cpp, ctx, n_threads)
    except (OSError, AttributeError, RuntimeError) as error:
        log.info("no persistent threadpool (%s); llama.cpp makes one per token", error)
        return None


def common_prefix(a: list[int], b: list[int]) -> int:
    limit = min(len(a), len(b))
    if limit == 0:
        return 0
    left = np.asarray(a[:limit], dtype=np.int64)
    right = np.asarray(b[:limit], dtype=np.int64)
    diff = np.nonzero(left != right)[0]
    return int(diff[0]) if diff.size else limit


# Top-p looks for the nucleus among this many most likely tokens first (a partial sort),
# and sorts the whole vocabulary only when the nucleus is wider.
NUCLEUS_CANDIDATES = 2048


@dataclass
class Sampler:
    temperature: float
    top_p: float
    rng: np.random.Generator

    def choose(self, logits: np.ndarray, *, logprob: bool = True) -> tuple[int, float]:
        """Pick the next token; returns it with its log-probability under the model.

        Greedy decoding without ``logprob`` skips the softmax over the vocabulary and
        returns 0.0. Everything is O(vocabulary) in float32 with float64 sums: a full
        sort of Gemma 3's 262k logits per token cost more than decoding the token.
        """
        if self.temperature <= 0.0 and not logprob:
            return int(np.argmax(logits)), 0.0
        shifted = logits - np.float32(logits.max())
        log_norm = float(np.log(np.exp(shifted).sum(dtype=np.float64)))
        if self.temperature <= 0.0:
            token = int(np.argmax(logits))
            return token, float(shifted[token]) - log_norm
        weights = np.exp(shifted / np.float32(self.temperature))
        total = float(weights.sum(dtype=np.float64))
        if self.top_p < 1.0:
            token = self._nucleus(weights, total)
        else:
            token = int(self.rng.choice(weights.size, p=weights.astype(np.float64) / total))
        return token, float(shifted[token]) - log_norm

    def _nucleus(self, weights: np.ndarray, total: float) -> int:
        """Sample among the fewest most likely tokens whose mass reaches ``top_p``."""
        size = weights.size
        if size > NUCLEUS_CANDIDATES:
            candidates = np.argpartition(weights, size - NUCLEUS_CANDIDATES)[size - NUCLEUS_CANDIDATES :]
        else:
            candidates = np.arange(size)
        order = candidates[np.argsort(-weights[candidates], kind="stable")]
        cumulative = np.cumsum(weights[order], dtype=np.float64) / total
        if cumulative[-1] < self.top_p and order.size < size:  # a wider nucleus: sort it all
            order = np.argsort(-weights, kind="stable")
            cumulative = np.cumsum(weights[order], dtype=np.float64) / total
        keep = order[: int(np.searchsorted(cumulative, self.top_p)) + 1]
        kept = weights[keep].astype(np.float64)
        return int(keep[self.rng.choice(keep.size, p=kept / kept.sum())])


class LlamaBackend:
    """A loaded GGUF model. One instance, owned by the model worker's thread."""

    def __init__(
        self,
        path: str,
        *,
        name: str,
        n_ctx: int,
        n_threads: int,
        n_gpu_layers: int = 0,
        fim_template: str | None = "auto",
        flash_attention: str = "auto",
        header: GGUFHeader | None = None,
    ) -> None:
        """Load ``path`` (its GGUF header checked first, unless ``header`` is that check's
        result): llama.cpp aborts the process on some corrupt headers instead of failing."""
        if header is None:
            try:
                header = read_header(path)
            except GGUFError as error:
                raise ModelUnavailable(str(error)) from error
        llama_cpp = _import_llama()

        def load(flash: bool) -> Any:
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                n_gpu_layers=n_gpu_layers,
                n_batch=512,
                swa_full=True,  # keep sliding-window layers' cache whole, so prefixes reuse
                flash_attn=flash,
                verbose=False,
            )

        self.flash_attention = flash_attention != "off"
        try:
            try:
                self.llm = load(self.flash_attention)
            except (ValueError, RuntimeError) as error:
                if flash_attention != "auto":
                    raise
                log.info("flash attention unavailable (%s); loading without it", error)
                self.flash_attention = False
                self.llm = load(False)
        except (ValueError, RuntimeError, OSError) as error:
            raise ModelUnavailable(f"llama.cpp could not load {path}: {error}") from error
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._llama_cpp = llama_cpp
        self.n_vocab = self.llm.n_vocab()
        if fim_template == "auto":
            self.template: FimTemplate | None = detect_template(header.metadata, header.special_tokens)
        else:
            from lsp_server.prompts.fim import template_by_name

            self.template = template_by_name(fim_template)
        self.fim_tokens: FimTokens | None = None
        if self.template is not None:
            try:
                self.fim_tokens = resolve_tokens(self.template, self._tokenize_special)
            except ValueError as error:
                log.warning("%s; falling back to prefix-only prompts", error)
                self.template = None
        self.add_bos = bool(self.llm._model.add_bos_token()) if hasattr(self.llm, "_model") else True
        self.info = ModelInfo(
            name=name,
            path=str(path),
            fim_template=self.template.name if self.template else None,
            n_ctx=self.llm.n_ctx(),
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
        )
        self._cached: list[int] = []
        self.threadpool = attach_threadpool(llama_cpp, self.llm.ctx, n_threads)

    def close(self) -> None:
        """Free the threadpool, then the model (the worker calls this when it swaps models)."""
        if self.threadpool is not None:
            self.threadpool.close()
            self.threadpool = None
        self.llm.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "threadpool", None) is not None:
                self.threadpool.close()  # type: ignore[union-attr]
        except Exception:  # interpreter shutdown: the libraries may be gone
            pass

    # -- tokens -------------------------------------------------------------------------

    def _tokenize_special(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def bos(self) -> list[int]:
        token = self.llm.token_bos()
        return [token] if self.add_bos and token >= 0 else []

    def is_end(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        return bytes(self.llm.detokenize([token], special=False))

    def _avoid(
        self,
        token: int,
        logprob: float,
        logits: np.ndarray,
        sampler: Sampler,
        request: GenerationRequest,
    ) -> tuple[int, float]:
        """Choose again, without it, while the token starts with one of ``ban_first``.

        Rejecting and drawing again samples the distribution left without the banned
        tokens; no scan of the vocabulary is needed (a few retries at most in practice).
        """
        masked: np.ndarray | None = None
        for _ in range(64):
            text = self.piece(token).decode("utf-8", errors="replace").lstrip(" \t\r\n")
            if not text.startswith(request.ban_first):
                break
            if masked is None:
                masked = logits.copy()
            masked[token] = -np.inf
            token, logprob = sampler.choose(masked, logprob=request.logprobs)
        return token, logprob

    # -- generation ---------------------------------------------------------------------

    def _logits(self) -> np.ndarray:
        pointer = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def _evaluate(self, tokens: list[int], cancel: CancelToken) -> tuple[int, int]:
        """Bring the KV cache to ``tokens``; returns (reused, evaluated) counts."""
        reused = common_prefix(self._cached, tokens)
        if reused >= len(tokens):
            reused = len(tokens) - 1  # the last token must be evaluated for fresh logits
        self.llm.n_tokens = reused
        self._cached = self._cached[:reused]
        pending = tokens[reused:]
        step = 256  # slices: a superseded request stops early, batches stay efficient
        for start in range(0, len(pending), step):
            if cancel.cancelled:
                raise Cancelled(cancel.reason)
            piece = pending[start : start + step]
            self.llm.eval(piece)
            self._cached.extend(piece)
        return reused, len(pending)

    def request_tokens(self, request: GenerationRequest) -> list[int]:
        """The prompt tokens ``generate`` evaluates: the request's own (or its prompt
        tokenized), the oldest dropped where the context would overflow."""
        if request.prompt_tokens is not None:
            tokens = list(request.prompt_tokens)
        else:
            tokens = self.bos() + self.tokenize(request.prompt, special=request.special)
        room = max(1, self.info.n_ctx - request.max_tokens - 1)
        if len(tokens) > room:
            tokens = self.bos() + tokens[len(tokens) - room + len(self.bos()) :]
        return tokens or self.bos() or [self.llm.token_eos()]

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        started = time.perf_counter()
        tokens = self.request_tokens(request)
        n_ctx = self.info.n_ctx
        reused, evaluated = self._evaluate(tokens, cancel)
        prompt_done = time.perf_counter()
        sampler = Sampler(
            request.temperature, request.top_p, np.random.default_rng(request.seed)
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = ""
        logprob_sum = 0.0
        count = 0
        reason = "length"
        max_tokens = min(request.max_tokens, n_ctx - len(tokens) - 1)
        while count < max_tokens:
            if cancel.cancelled:
                raise Cancelled(cancel.reason)
            logits = self._logits()
            token, logprob = sampler.choose(logits, logprob=request.logprobs)
            if request.ban_first and not text.strip():
                token, logprob = self._avoid(token, logprob, logits, sampler, request)
            if self.is_end(token) or token in request.stop_token_ids:
                reason = "eos"
                break
            count += 1
            logprob_sum += logprob
            text += decoder.decode(self.piece(token))
            cut, reason_now = self._check_stops(text, request, started)
            if cut is not None:
                text = text[:cut]
                reason = reason_now
                break
            self.llm.eval([token])
            self._cached.append(token)
        text += decoder.decode(b"", final=True) if reason == "length" else ""
        finished = time.perf_counter()
        return GenerationResult(
            text=text,
            token_count=count,
            logprob_sum=logprob_sum,
            prompt_tokens=len(tokens),
            reused_tokens=reused,
            evaluated_tokens=evaluated,
            prompt_eval_s=prompt_done - started,
            decode_s=finished - prompt_done,
            total_s=finished - started,
            stop_reason=reason,
        )

    @staticmethod
    def _check_stops(
        text: str, request: GenerationRequest, started: float
    ) -> tuple[int | None, str]:
        cut: int | None = None
        for stop in request.stop:
            found = text.find(stop)
            if found >= 0 and (cut is None or found < cut):
                cut = found
        if cut is not None:
            return cut, "stop"
        if request.stop_rule is not None:
            ruled = request.stop_rule(text)
            if ruled is not None:
                return ruled, "rule"
        if request.time_budget_s is not None and time.perf_counter() - started > request.time_budget_s:
            # Past the budget: stop once one complete line is out.
            cut = complete_line_cut(text)
            if cut is not None:
                return cut, "time"
        return None, ""
