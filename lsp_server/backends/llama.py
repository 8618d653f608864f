"""The llama.cpp backend: the only module that touches llama-cpp-python.

Generation is our own token loop over ``Llama.eval`` so that we can:
- reuse the KV cache for the longest common token prefix with the previous request
  (typing a character re-evaluates only the tokens after it),
- stop between tokens when a newer request supersedes this one,
- apply stop strings, a stop rule and a time budget's cut as text streams out (the
  rules come with the request: this module knows nothing of prompts),
- sum log-probabilities for ranking samples.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lsp_server.backends.base import (
    Cancelled,
    CancelToken,
    FimTokens,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelUnavailable,
)
from lsp_server.backends.devices import (
    gpu_backends,
    gpu_build,
    gpu_devices,
    offload_plan,
    preload_cuda_libraries,
)
from lsp_server.backends.fim import FimTemplate, detect_template, resolve_tokens, template_by_name
from lsp_server.backends.gguf import GGUFError, GGUFHeader, read_header
from lsp_server.backends.kvcache import KvSnapshots, Snapshot, common_prefix
from lsp_server.backends.sampler import LogitViews, Sampler
from lsp_server.backends.stops import check_stops
from lsp_server.backends.threadpool import attach_threadpool
from lsp_server.backends.threads import ThreadGovernor, run_queue_wait_ns

log = logging.getLogger(__name__)


def _import_llama():  # type: ignore[no-untyped-def]
    preload_cuda_libraries()
    try:
        import llama_cpp
    except ImportError as error:  # pragma: no cover - install problem
        raise ModelUnavailable(
            f"llama-cpp-python is not installed ({error}); run the README's install command"
        ) from error
    except (OSError, RuntimeError) as error:  # its shared libraries did not load
        raise ModelUnavailable(
            f"llama-cpp-python's libraries did not load ({error}); a CUDA build needs the CUDA "
            "runtime and cuBLAS its libraries name (scripts/build-llama-cuda.sh installs them)"
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
        "gpu_offload": gpu_build(llama_cpp),
        "gpu_backends": gpu_backends(),
        "features": features,
        "extra_buffers": extra_buffers_allowed(info),
        "raw": info.strip(),
    }


# llama.cpp's AMX matrix kernels (built in where the compiler targets a CPU with AMX, as
# ``-march=native`` does on Sapphire Rapids and later) crash in the first prompt evaluation
# on some of these machines (a segfault in ggml_backend_amx_mul_mat with Q4_K weights, the
# embedded model's; llama.cpp issue 20824, closed without a fix; seen on this project's own
# 2-core Xeon). A build that has them loads models without llama.cpp's extra buffer types
# (the AMX and repacked weight layouts), unless this variable is 1. The Makefile and
# scripts/build-llama-server.sh build without AMX (scripts/llama-cflags.sh), so their
# builds keep the repacked layouts.
AMX_VARIABLE = "GHOSTPILOT_LLAMA_AMX"
_PARAMS_LOCK = threading.Lock()


def build_has_amx(info: str) -> bool:
    """Whether a llama.cpp system-info line reports AMX kernels built in."""
    return any(f"{name} = 1" in info for name in ("AMX_INT8", "AMX_BF16", "AMX_TILE"))


def extra_buffers_allowed(info: str, environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether a model may load into llama.cpp's extra buffer types: not with AMX built
    in, unless ``GHOSTPILOT_LLAMA_AMX=1`` says the user's machine runs it."""
    return not build_has_amx(info) or environ.get(AMX_VARIABLE, "") == "1"


@contextlib.contextmanager
def _model_params(llama_cpp: Any, *, extra_buffers: bool) -> Iterator[None]:
    """While loading: ``Llama`` builds its model parameters from
    ``llama_model_default_params``, and has no argument for ``use_extra_bufts``."""
    if extra_buffers:
        yield
        return
    module = llama_cpp.llama_cpp
    default = module.llama_model_default_params

    def params() -> Any:
        made = default()
        made.use_extra_bufts = False
        return made

    with _PARAMS_LOCK:
        module.llama_model_default_params = params
        try:
            yield
        finally:
            module.llama_model_default_params = default


# Save the live KV state before a request drops at least this many of its prompt tokens
# (moving to another function); a restore must beat the live cache by this many tokens.
# As low as the gain a restore needs: with a brief class header (prompts/held.py) a
# short method's own tokens are often under 64, and a return evaluated them again.
SAVE_MIN_TOKENS = 32
RESTORE_MIN_GAIN = 32


def set_lora_adapter(llama_cpp: Any, ctx: Any, adapter: Any) -> bool:
    """Set a loaded LoRA ``adapter`` on llama.cpp context ``ctx`` at scale 1 (the main
    context and the batch context both do); whether llama.cpp accepted it."""
    adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
    scales = (ctypes.c_float * 1)(1.0)
    return bool(llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales) == 0)


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
        lora_path: str | None = None,
        adaptive_threads: bool = True,
    ) -> None:
        """Load ``path`` (its GGUF header checked first, unless ``header`` is that check's
        result): llama.cpp aborts the process on some corrupt headers instead of failing.
        ``lora_path``: a LoRA adapter GGUF applied on top (the registry names it)."""
        if header is None:
            try:
                header = read_header(path)
            except GGUFError as error:
                raise ModelUnavailable(str(error)) from error
        llama_cpp = _import_llama()
        build = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
        self.extra_buffers = extra_buffers_allowed(build)
        if not self.extra_buffers:
            log.info("this llama.cpp build has AMX kernels, which crash on some CPUs: loading "
                     "without extra buffer types (%s=1 keeps them)", AMX_VARIABLE)

        def load(flash: bool) -> Any:
            with _model_params(llama_cpp, extra_buffers=self.extra_buffers):
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
        self.lora_adapter = self._apply_lora(llama_cpp, lora_path) if lora_path else None
        offload = offload_plan(
            n_gpu_layers, llama_cpp.llama_model_n_layer(self.llm.model),
            build_has_gpu=gpu_build(llama_cpp),
            devices=gpu_devices(llama_cpp) if n_gpu_layers else [],
        )
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self._llama_cpp = llama_cpp
        self.n_vocab = self.llm.n_vocab()
        template = (
            detect_template(header.metadata, header.special_tokens)
            if fim_template == "auto"
            else template_by_name(fim_template)
        )
        fim = self._resolve_fim(template)
        add_bos = bool(self.llm._model.add_bos_token()) if hasattr(self.llm, "_model") else True
        bos_token = self.llm.token_bos()
        self.info = ModelInfo(
            name=name,
            path=str(path),
            fim_template=template.name if fim is not None and template is not None else None,
            n_ctx=self.llm.n_ctx(),
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            bos=(bos_token,) if add_bos and bos_token >= 0 else (),
            fim=fim,
            offload=offload.summary,
            offload_warning=offload.warning,
        )
        self._cached: list[int] = []
        # How many of the cached tokens were the last request's prompt (the rest were
        # generated after it).
        self._prompt_len = 0
        # KV state of recently edited places (backends/kvcache.py); the engine sets its
        # bound from the kvCacheMb setting.
        self.kv_cache = KvSnapshots()
        self.threadpool = attach_threadpool(llama_cpp, self.llm.ctx, n_threads)
        # Fewer threads while other programs take cores (backends/threads.py); None: fixed.
        self.governor = ThreadGovernor(n_threads) if adaptive_threads and n_threads > 1 else None
        self._threads_set = n_threads
        # The generation loop's per-token work in Python, kept small (0.15 ms a token
        # before, as much as a 2-token prompt's evaluation over a one-line suggestion):
        # each token's text once, the logits' array once per buffer, and a batch of one
        # made once for decoding a generated token.
        self._pieces: dict[int, bytes] = {}
        self._logit_views = LogitViews(self.n_vocab)
        self._one = llama_cpp.llama_batch_init(1, 0, 1)
        self._one.n_seq_id[0] = 1
        self._one.seq_id[0][0] = 0
        self._one.logits[0] = 1

    def _apply_lora(self, llama_cpp: Any, path: str) -> Any:
        """Load a LoRA adapter GGUF onto the model and set it on the context (scale 1).

        Done here, not through ``Llama(lora_path=...)``, which turns mmap off and so reads
        the whole base into private memory; the adapter is freed with the model.
        """
        adapter = llama_cpp.llama_adapter_lora_init(self.llm.model, str(path).encode("utf-8"))
        if not adapter:
            self.llm.close()
            raise ModelUnavailable(f"llama.cpp could not load the LoRA adapter {path}")
        if not set_lora_adapter(llama_cpp, self.llm.ctx, adapter):
            self.llm.close()
            raise ModelUnavailable(f"llama.cpp could not apply the LoRA adapter {path}")
        return adapter

    def close(self) -> None:
        """Free the threadpool, then the model (the worker calls this when it swaps models)."""
        if self.threadpool is not None:
            self.threadpool.close()
            self.threadpool = None
        if getattr(self, "_batch", None) is not None:
            self._batch.close()  # the batch context (backends/batch.py) before its model
        if getattr(self, "_one", None) is not None:
            self._llama_cpp.llama_batch_free(self._one)
            self._one = None
        self.llm.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "threadpool", None) is not None:
                self.threadpool.close()  # type: ignore[union-attr]
        except Exception:  # interpreter shutdown: the libraries may be gone
            pass

    # -- tokens -------------------------------------------------------------------------

    def _resolve_fim(self, template: FimTemplate | None) -> FimTokens | None:
        if template is None:
            return None
        try:
            return resolve_tokens(template, lambda text: self.tokenize(text, special=True))
        except ValueError as error:
            log.warning("%s; falling back to prefix-only prompts", error)
            return None

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def bos(self) -> list[int]:
        return list(self.info.bos)

    def is_end(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = bytes(self.llm.detokenize([token], special=False))
        return piece

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
        """The last decoded token's logits, in llama.cpp's buffer (no copy)."""
        return self._logit_views.of(self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1))

    def _decode_one(self, token: int) -> None:
        """Decode one generated token after the cache's last: what ``Llama.eval`` does
        for it (nothing past the cache is left to remove: the prompt's evaluation did
        that), without building a batch in Python each time."""
        llm, batch = self.llm, self._one
        position = llm.n_tokens
        batch.n_tokens = 1
        batch.token[0] = token
        batch.pos[0] = position
        code = self._llama_cpp.llama_decode(llm.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        llm.input_ids[position] = token
        llm.n_tokens = position + 1

    def prefill(self, tokens: Sequence[int], cancel: CancelToken) -> int:
        """Evaluate ``tokens`` into the KV cache ahead of a request that will start with
        them (the engine's start-early); in slices of 64, so that a request that comes
        meanwhile waits at most one slice. Returns the tokens evaluated."""
        return self._evaluate(list(tokens), cancel, step=64)[1]

    def _evaluate(self, tokens: list[int], cancel: CancelToken, step: int = 256) -> tuple[int, int]:
        """Bring the KV cache to ``tokens``; returns (reused, evaluated) counts."""
        reused = self._from_snapshots(tokens, common_prefix(self._cached, tokens))
        self._prompt_len = len(tokens)
        if reused >= len(tokens):
            reused = len(tokens) - 1  # the last token must be evaluated for fresh logits
        self.llm.n_tokens = reused
        self._cached = self._cached[:reused]
        pending = tokens[reused:]
        # Slices: a superseded request stops early, batches stay efficient.
        for start in range(0, len(pending), step):
            if cancel.cancelled:
                raise Cancelled(cancel.reason)
            piece = pending[start : start + step]
            self.llm.eval(piece)
            self._cached.extend(piece)
        return reused, len(pending)

    def _from_snapshots(self, tokens: list[int], reused: int) -> int:
        """Before a request drops a long stretch of the live prompt (the user moved to
        another function), save the live state; where a saved state shares a longer
        prefix with ``tokens`` than the live cache, restore it. Returns the prefix of
        ``tokens`` that the KV cache now holds."""
        cache = self.kv_cache
        if cache.limit_bytes <= 0:
            return reused
        if min(self._prompt_len, len(self._cached)) - reused >= SAVE_MIN_TOKENS:
            self._save_state()
        if len(tokens) - reused < RESTORE_MIN_GAIN:
            return reused  # no saved state can add enough (typing: a few new tokens)
        snapshot, shared = cache.best(tokens)
        if snapshot is None or shared < reused + RESTORE_MIN_GAIN:
            return reused
        if not self._restore_state(snapshot):
            return 0
        cache.used(snapshot, shared)
        return min(shared, len(self._cached))

    def _save_state(self) -> None:
        """Copy sequence 0's state (the live cache) into the snapshot cache."""
        if not self._cached or self.kv_cache.covered(self._cached):
            return
        llama_cpp, ctx = self._llama_cpp, self.llm.ctx
        size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or size > self.kv_cache.limit_bytes:
            return
        data = bytearray(size)
        buffer = (ctypes.c_uint8 * size).from_buffer(data)
        written = int(llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0))
        del buffer  # releases the bytearray's export
        if written <= 0:
            log.debug("llama_state_seq_get_data wrote nothing; state not saved")
            return
        del data[written:]
        self.kv_cache.add(self._cached, data)

    def _restore_state(self, snapshot: Snapshot) -> bool:
        """Make ``snapshot`` the live cache; on failure the cache is emptied (False)."""
        llama_cpp, ctx = self._llama_cpp, self.llm.ctx
        buffer = (ctypes.c_uint8 * snapshot.size).from_buffer(snapshot.data)
        try:
            done = int(llama_cpp.llama_state_seq_set_data(ctx, buffer, snapshot.size, 0))
        finally:
            del buffer
        if done <= 0:
            log.warning("could not restore a saved KV state; evaluating the prompt afresh")
            self.llm.n_tokens = 0
            self._cached = []
            return False
        self._cached = list(snapshot.tokens)
        self.llm.n_tokens = len(self._cached)
        return True

    def kv_cache_stats(self) -> dict[str, int | float]:
        return self.kv_cache.stats()

    def request_tokens(self, request: GenerationRequest) -> list[int]:
        """The prompt tokens ``generate`` evaluates: the request's own (or its prompt
        tokenized), the oldest dropped where the context would overflow."""
        if request.prompt_tokens is not None:
            tokens = list(request.prompt_tokens)
        else:
            tokens = self.bos() + self.tokenize(request.prompt, special=request.special)
        room = max(1, self.info.n_ctx - request.max_tokens - 1)
        if len(tokens) > room:
            log.warning(
                "a prompt of %d tokens does not fit %d beside %d to generate; its oldest "
                "tokens are dropped (callers fit prompts with prompts/budget.py)",
                len(tokens), room, request.max_tokens,
            )  # fmt: skip
            tokens = self.bos() + tokens[len(tokens) - room + len(self.bos()) :]
        return tokens or self.bos() or [self.llm.token_eos()]

    def threads_stats(self) -> dict[str, Any] | None:
        """The thread governor's figures (``ghostpilot/stats``); None where threads are fixed."""
        return self.governor.stats() if self.governor is not None else None

    def _set_threads(self, count: int) -> None:
        if count != self._threads_set:
            self._llama_cpp.llama_set_n_threads(self.llm.ctx, count, count)
            self._threads_set = count

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        governor = self.governor
        threads = governor.level() if governor is not None else self._threads_set
        self._set_threads(threads)
        waited = run_queue_wait_ns() if governor is not None else None
        result = self._generate(request, cancel)
        if governor is not None:
            after = run_queue_wait_ns() if waited is not None else None
            waiting = None  # the share of the generation spent waiting for a core
            if waited is not None and after is not None and result.total_s > 0:
                waiting = (after - waited) / 1e9 / result.total_s
            before = governor.current
            governor.observe(threads, result.token_count, result.decode_s, waiting)
            if governor.current != before:
                figures = ", ".join(f"{ms} ms at {level}" for level, ms in governor.stats()["msPerToken"].items())
                log.info("decoding with %d thread(s) instead of %d, %s (a token: %s)", governor.current, before,
                         "other programs are taking cores" if governor.current < before else "the cores are free again",
                         figures)
        return result

    def _generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
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
            cut, reason_now = check_stops(text, request, started)
            if cut is not None:
                text = text[:cut]
                reason = reason_now
                break
            self._decode_one(token)
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

    def sample_batch(
        self, request: GenerationRequest, k: int, cancel: CancelToken, on_result: Any = None
    ) -> list[GenerationResult]:
        """``k`` samples of ``request`` decoded as one batch (seeds ``seed + i``), in a
        second context of this model made on first use (see backends/batch.py);
        ``on_result(i, result)`` as each sequence ends."""
        from lsp_server.backends.batch import BatchContext

        if getattr(self, "_batch", None) is None:
            self._batch = BatchContext(self._llama_cpp, self.llm, self.info.n_threads, self.lora_adapter)
        self._batch.threads = self._threads_set  # as few as the main context decodes with now
        return self._batch.sample(self, request, k, cancel, on_result)
