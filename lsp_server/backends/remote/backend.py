"""A :class:`~lsp_server.backends.base.Backend` served by an engine people already run:
llama-server, an OpenAI-compatible server (vLLM, llama-server's ``/v1``) or Ollama.

Everything that makes a suggestion good stays here on the client: prompts are built as
token ids with the model's own tokenizer, FIM templates come from the model's GGUF, and
stop strings, the stop rule and the time budget's cut are applied as the stream arrives.
The stream is closed the moment one of them stops it or the request is cancelled, so the
engine stops generating too.

The tokenizer: the GGUF named by ``remoteTokenizer`` (a registry name or a path), else,
for a llama-server on this machine, the GGUF its ``/props`` names, loaded ``vocab_only``
and checked against the engine's ``/tokenize``; failing that, the engine's ``/tokenize``
(then no FIM: the template needs the GGUF's metadata). Ollama has no ``/tokenize``: with
no ``remoteTokenizer`` its prompts are text, sized by an estimate (said once in the log).
Not honoured remotely: ``ban_first`` and ``logprobs`` (``logprob_sum`` stays 0).
"""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from lsp_server.backends.base import (
    Cancelled,
    CancelToken,
    FimTokens,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelUnavailable,
)
from lsp_server.backends.fim import detect_template, resolve_tokens
from lsp_server.backends.remote import apis, http
from lsp_server.backends.remote.http import HttpOptions, RemoteError, is_loopback
from lsp_server.backends.remote.recovery import Backoff, unreachable
from lsp_server.backends.stops import check_stops

log = logging.getLogger(__name__)

# Text used to check that a local vocabulary tokenizes as the engine does.
TOKENIZER_PROBE = 'def mean(xs: list[float]) -> float:\n\t"""Ünïcode 中文 ok."""\n    return sum(xs) / len(xs)  # x\n'
# Bytes per token assumed where no tokenizer is reachable (code averages 3-4).
ESTIMATE_BYTES_PER_TOKEN = 3
# For benchmarks (``ghostpilot bench team``): when set, one JSON line per request is
# appended to this file: outcome (ended, stopped, cancelled, failed) and token counts.
USAGE_LOG_ENV = "GHOSTPILOT_REMOTE_USAGE_LOG"

_warned_plain_http: set[str] = set()


def max_tokens_cap(n_ctx: int) -> int:
    """The most tokens one request may generate: half the context, so that a request
    whose ``max_tokens`` reaches ``n_ctx`` still leaves the prompt a sensible share of it
    (not one token) (pure)."""
    return max(1, n_ctx // 2)


@dataclass(frozen=True)
class RemoteConfig:
    engine: str  # one of apis.ENGINES
    endpoint: str  # base URL, e.g. http://127.0.0.1:8080
    model: str = ""  # the engine's model name (OpenAI ``model``, Ollama tag)
    tokenizer: str = ""  # registry name or GGUF path of the engine's model
    n_ctx: int = 2048  # Ollama's num_ctx; elsewhere the engine says its own
    http: HttpOptions = field(default_factory=HttpOptions)


def plain_http_warning(endpoint: str) -> str | None:
    """The warning for code sent unencrypted off this machine, or None."""
    parts = urllib.parse.urlsplit(endpoint)
    if parts.scheme == "http" and parts.hostname and not is_loopback(parts.hostname):
        return (
            f"{endpoint} is plain http:// on another host: your code leaves this machine "
            "unencrypted (use https://, or an SSH tunnel to a loopback port)"
        )
    return None


def _usage(outcome: str, received: int, prompt: int, counts: dict[str, Any]) -> None:
    path = os.environ.get(USAGE_LOG_ENV)
    if not path:
        return
    import json

    record = {"outcome": outcome, "received": received, "prompt": prompt,
              "generated": counts.get("generated"), "reused": counts.get("reused"),
              "evaluated": counts.get("evaluated"), "time": time.time()}  # fmt: skip
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
    except OSError as error:
        log.debug("cannot write the usage log %s: %s", path, error)


class _LocalVocab:
    """A GGUF's tokenizer loaded ``vocab_only`` (no weights)."""

    def __init__(self, path: str) -> None:
        try:
            import llama_cpp
        except ImportError as error:  # pragma: no cover - install problem
            raise ModelUnavailable(f"llama-cpp-python is not installed ({error})") from error
        try:
            self.llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        except (ValueError, RuntimeError, OSError) as error:
            raise ModelUnavailable(f"cannot read the tokenizer of {path}: {error}") from error
        self.path = path
        add_bos = bool(self.llm._model.add_bos_token()) if hasattr(self.llm, "_model") else True
        bos = self.llm.token_bos()
        self.bos: tuple[int, ...] = (bos,) if add_bos and bos >= 0 else ()

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def detokenize(self, tokens: Iterable[int]) -> str:
        return bytes(self.llm.detokenize(list(tokens), special=True)).decode("utf-8", "replace")

    def close(self) -> None:
        self.llm.close()


class RemoteBackend:
    """One engine at one endpoint; only the model worker's thread calls it."""

    def __init__(self, config: RemoteConfig) -> None:
        if config.engine not in apis.ENGINES:
            raise ModelUnavailable(
                f"unknown backend {config.engine!r}; one of local, {', '.join(apis.ENGINES)}"
            )
        self.config = config
        self.base = apis.api_root(config.engine, config.endpoint)
        self.where = f"{config.engine} at {self.base}"
        warning = plain_http_warning(self.base)
        if warning and self.base not in _warned_plain_http:
            _warned_plain_http.add(self.base)
            log.warning("%s", warning)
        self.warning = warning
        self._vocab: _LocalVocab | None = None
        self._estimate = False
        # Where token ids come from, checked against the engine (ghostpilot doctor says it).
        self.tokenizer_source = ""
        # Once the engine is found unreachable, requests fail at once with that error
        # until the backoff allows the next try (one connection attempt per interval).
        self._down: RemoteError | None = None
        self._backoff = Backoff()
        # Told (on the worker thread) each time the engine is found unreachable.
        self.on_unreachable: Callable[[RemoteError], None] | None = None
        self.pool = http.Pool()
        self.notes: list[str] = []
        self._said_max_tokens_cap = False
        props = self._discover()
        n_ctx = self._n_ctx(props)
        header = self._choose_tokenizer(props)
        bos = self._vocab.bos if self._vocab is not None else self._remote_bos()
        fim = self._fim(header)
        self.info = ModelInfo(
            name=self.model or config.engine,
            path=self.base,
            fim_template=fim[0] if fim else None,
            n_ctx=n_ctx,
            n_threads=0,
            n_gpu_layers=0,
            bos=bos,
            fim=fim[1] if fim else None,
        )
        for note in self.notes:
            log.info("%s: %s", self.where, note)

    # -- start-up -----------------------------------------------------------------------

    def _get(self, path: str, body: Any = None, cancel: CancelToken | None = None) -> Any:
        method = "GET" if body is None else "POST"
        with http.request(
            method, self.base + path, self.config.http, body=body, cancel=cancel,
            where=self.where, pool=self.pool,
        ) as response:  # fmt: skip
            return response.json()

    # -- an engine that went away ---------------------------------------------------------

    def _gate(self) -> None:
        """Fail at once while the engine is down and the next try is not due yet."""
        down = self._down
        if down is not None and not self._backoff.due(time.monotonic()):
            raise RemoteError(down.kind, str(down), down.status)

    def _failed(self, error: RemoteError) -> None:
        if not unreachable(error):
            return
        wait = self._backoff.failed(time.monotonic())
        if self._down is None:
            log.warning("%s is unreachable (%s); trying again in %.1f s", self.where, error, wait)
        self._down = error
        if self.on_unreachable is not None:
            self.on_unreachable(error)

    def _reached(self) -> None:
        if self._down is not None:
            log.info("%s answers again", self.where)
        self._down = None
        self._backoff.succeeded()

    def _discover(self) -> dict[str, Any]:
        """Reach the engine, learn its model name; returns llama-server's ``/props``."""
        self.model = self.config.model
        engine = self.config.engine
        if engine == "ollama":
            self._get("/api/version")
            if not self.model:
                raise ModelUnavailable(
                    "backend ollama needs remoteModel (an Ollama model tag, e.g. qwen2.5-coder:1.5b-base)"
                )
            return {}
        props: dict[str, Any] = {}
        if engine == "llama-server":
            props = self._get("/props")
        else:
            models = self._get("/v1/models")
            data = models.get("data") if isinstance(models, dict) else None
            if isinstance(data, list) and data:
                chosen = next((m for m in data if m.get("id") == self.model), None)
                if self.model and chosen is None:
                    known = ", ".join(str(m.get("id")) for m in data)
                    raise RemoteError(
                        "not-found",
                        f"{self.where} does not serve model {self.model!r} (it serves: {known})",
                    )
                chosen = chosen or data[0]
                self.model = self.model or str(chosen.get("id", ""))
                props["max_model_len"] = chosen.get("max_model_len")
            try:  # llama-server behind its /v1 route also answers /props
                props.update(self._get("/props"))
            except RemoteError:
                pass
        return props

    def _n_ctx(self, props: dict[str, Any]) -> int:
        for value in (
            props.get("max_model_len"),
            (props.get("default_generation_settings") or {}).get("n_ctx"),
        ):
            if isinstance(value, int) and value > 0:
                return value
        return self.config.n_ctx

    def _choose_tokenizer(self, props: dict[str, Any]) -> Any:
        """Load a local vocabulary where one matches the engine; returns its GGUF header."""
        from lsp_server.backends.gguf import GGUFError, read_header
        from lsp_server.backends.registry import ModelNotFound, resolve

        candidates: list[str] = []
        if self.config.tokenizer:
            try:
                candidates.append(str(resolve(self.config.tokenizer).path))
            except ModelNotFound as error:
                raise ModelUnavailable(f"remoteTokenizer: {error}") from error
        served = props.get("model_path")
        if isinstance(served, str) and served and os.path.isfile(served):
            candidates.append(served)
        for path in candidates:
            try:
                header = read_header(path)
            except GGUFError as error:
                self.notes.append(f"{path} is not a usable GGUF ({error})")
                continue
            vocab = _LocalVocab(path)
            if self.config.engine == "ollama" or self._same_tokens(vocab):
                self._vocab = vocab
                self.notes.append(f"tokenizer: {path} (vocab only)")
                self.tokenizer_source = (
                    f"{path} (vocab only; not checked: Ollama has no /tokenize)"
                    if self.config.engine == "ollama"
                    else f"{path} (vocab only; tokenizes as the engine's /tokenize does)"
                )
                return header
            vocab.close()
            self.notes.append(f"{path} does not tokenize as the engine does; using its /tokenize")
        if self.config.engine == "ollama":
            self._estimate = True
            self.tokenizer_source = "none: text prompts sized by an estimate (Ollama has no /tokenize)"
            self.notes.append(
                "Ollama has no /tokenize: prompts are sent as text and sized by an estimate "
                "(set remoteTokenizer to the model's registry name or GGUF for exact sizes and FIM)"
            )
            return None
        try:
            self._remote_tokenize("x")
            self.tokenizer_source = "the engine's /tokenize (no local GGUF: prefix-only prompts)"
        except RemoteError as error:
            if error.kind != "not-found":
                raise
            self._estimate = True
            self.tokenizer_source = "none: the engine has no /tokenize; prompts sized by an estimate"
            self.notes.append("the engine has no /tokenize: prompts are sized by an estimate")
        return None

    def _same_tokens(self, vocab: _LocalVocab) -> bool:
        try:
            return vocab.tokenize(TOKENIZER_PROBE) == self._remote_tokenize(TOKENIZER_PROBE)
        except RemoteError as error:
            if error.kind == "not-found":
                return True  # nothing to check against
            raise

    def _remote_bos(self) -> tuple[int, ...]:
        if self._estimate:
            return ()
        plain = self._remote_tokenize("a")
        with_special = self._remote_tokenize("a", add_special=True)
        extra = len(with_special) - len(plain)
        return tuple(with_special[:extra]) if extra > 0 and with_special[extra:] == plain else ()

    def _fim(self, header: Any) -> tuple[str, FimTokens] | None:
        if header is None or self._vocab is None:
            return None
        template = detect_template(header.metadata, header.special_tokens)
        if template is None:
            return None
        vocab = self._vocab
        try:
            return template.name, resolve_tokens(
                template, lambda text: vocab.tokenize(text, special=True)
            )
        except ValueError as error:
            self.notes.append(f"{error}; prefix-only prompts")
            return None

    # -- Backend ------------------------------------------------------------------------

    def _remote_tokenize(
        self, text: str, *, special: bool = False, add_special: bool = False
    ) -> list[int]:
        self._gate()
        try:
            body = apis.tokenize_body(self.config.engine, text, self.model, special=special,
                                      add_special=add_special)  # fmt: skip
            answer = self._get("/tokenize", body)
        except RemoteError as error:
            self._failed(error)
            raise
        self._reached()
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if not isinstance(tokens, list):
            raise RemoteError("protocol", f"{self.where} answered /tokenize without tokens")
        return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        if self._vocab is not None:
            return self._vocab.tokenize(text, special=special)
        if self._estimate:
            size = len(text.encode("utf-8"))
            return [0] * (-(-size // ESTIMATE_BYTES_PER_TOKEN))
        return self._remote_tokenize(text, special=special)

    def _fit_max_tokens(self, request: GenerationRequest) -> GenerationRequest:
        """``request`` with ``max_tokens`` capped at :func:`max_tokens_cap` (said once)."""
        cap = max_tokens_cap(self.info.n_ctx)
        if request.max_tokens <= cap:
            return request
        if not self._said_max_tokens_cap:
            self._said_max_tokens_cap = True
            log.warning(
                "%s: max_tokens %d leaves too little of the context (%d tokens) for the prompt; "
                "capped at %d",
                self.where, request.max_tokens, self.info.n_ctx, cap,
            )  # fmt: skip
        return replace(request, max_tokens=cap)

    def _prompt_tokens(self, request: GenerationRequest) -> list[int]:
        if request.prompt_tokens is not None:
            tokens = list(request.prompt_tokens)
        else:
            tokens = [*self.info.bos, *self.tokenize(request.prompt, special=request.special)]
        room = max(1, self.info.n_ctx - request.max_tokens - 1)
        if len(tokens) > room:
            log.warning(
                "a prompt of %d tokens does not fit %d; its oldest tokens are dropped",
                len(tokens),
                room,
            )
            bos = list(self.info.bos)
            tokens = bos + tokens[len(tokens) - room + len(bos) :]
        return tokens

    def _send(
        self, request: GenerationRequest, tokens: list[int]
    ) -> tuple[str, dict[str, Any], Callable[[Iterable[bytes], str], Iterator[apis.Piece]]]:
        engine = self.config.engine
        if engine == "llama-server":
            return "/completion", apis.llama_server_body(request, tokens), apis.llama_server_pieces
        if engine == "openai":
            return (
                "/v1/completions",
                apis.openai_body(request, tokens, self.model),
                apis.openai_pieces,
            )
        if (
            self._vocab is not None
            and self.info.fim is not None
            and request.prompt_tokens is not None
        ):
            bos = len(self.info.bos) if tokens[: len(self.info.bos)] == list(self.info.bos) else 0
            text = self._vocab.detokenize(tokens[bos:])  # FIM markers written out as text
        else:
            text = request.prompt
        body = apis.ollama_body(request, text, self.model, self.info.n_ctx)
        return "/api/generate", body, apis.ollama_pieces

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        started = time.perf_counter()
        if cancel.cancelled:
            raise Cancelled(cancel.reason)
        self._gate()
        request = self._fit_max_tokens(request)
        tokens = self._prompt_tokens(request)
        path, body, parse = self._send(request, tokens)
        response = None
        lines: Iterator[bytes] = iter(())
        ended = False
        outcome = "stopped"  # a client-side rule closed the stream, unless said otherwise
        text = ""
        count = 0
        reason = "length"
        first: float | None = None
        counts: dict[str, Any] = {}
        try:
            response = http.request(
                "POST", self.base + path, self.config.http, body=body, cancel=cancel,
                where=self.where, accept="text/event-stream", pool=self.pool,
            )  # fmt: skip
            self._reached()
            lines = response.lines()
            for piece in parse(lines, self.where):
                if cancel.cancelled:
                    raise Cancelled(cancel.reason)
                first = first or time.perf_counter()
                for key in (
                    "prompt_tokens",
                    "evaluated",
                    "reused",
                    "prompt_ms",
                    "decode_ms",
                    "generated",
                ):
                    if getattr(piece, key) is not None:
                        counts[key] = getattr(piece, key)
                if request.stop_token_ids and any(
                    t in request.stop_token_ids for t in piece.tokens
                ):
                    reason = "eos"
                    break
                count += len(piece.tokens) or (1 if piece.text else 0)
                text += piece.text
                cut, why = check_stops(text, request, started)
                if cut is not None:
                    text, reason = text[:cut], why
                    break
                if piece.done:
                    reason = piece.finish or "eos"
                    ended = True
                    outcome = "ended"
                    break
        except RemoteError as error:
            self._failed(error)
            outcome = "failed"
            raise
        except Cancelled:
            outcome = "cancelled"
            raise
        finally:
            _usage(outcome, count, len(tokens), counts)
            if response is not None:
                # A stream the engine ended is read to its end and its connection goes
                # back to the pool (keep-alive); one cut short is closed, and closing it
                # is what stops the engine generating.
                if ended:
                    response.drain(lines)
                response.close()
        finished = time.perf_counter()
        prompt_done = first or finished
        generated = counts.get("generated")
        return GenerationResult(
            text=text,
            token_count=count
            if generated is None or reason not in ("length", "eos")
            else int(generated),
            prompt_tokens=int(counts.get("prompt_tokens") or len(tokens)),
            reused_tokens=int(counts.get("reused") or 0),
            evaluated_tokens=int(counts.get("evaluated", len(tokens))),
            prompt_eval_s=counts["prompt_ms"] / 1000
            if "prompt_ms" in counts
            else prompt_done - started,
            decode_s=finished - prompt_done,
            total_s=finished - started,
            stop_reason=reason,
        )

    def close(self) -> None:
        self.pool.close()
        if self._vocab is not None:
            self._vocab.close()
            self._vocab = None
