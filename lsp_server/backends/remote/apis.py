"""What each engine's completion endpoint is sent and how its stream reads: pure functions.

- llama-server ``POST /completion``: the prompt as token ids, ``stream``,
  ``cache_prompt`` (no ``id_slot``: its slot-similarity picks the slot whose cache
  shares the longest prefix), ``return_tokens`` (so end-of-fill token ids are seen);
  server-sent events, the last with ``timings`` (``cache_n`` reused, ``prompt_n``
  evaluated).
- OpenAI-compatible ``POST /v1/completions`` (vLLM, llama-server): ``prompt`` as a list
  of token ids, ``stream``; server-sent events ending with ``[DONE]``. ``suffix`` is never
  sent: FIM prompts are built on the client.
- Ollama ``POST /api/generate``: text only, ``raw`` (no chat template: our own prompt),
  ``options`` ``num_predict``/``stop``/``seed``/``num_ctx``/``temperature``/``top_p``;
  newline-delimited JSON, the last object ``done`` with ``prompt_eval_count`` and
  ``eval_count``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lsp_server.backends.base import GenerationRequest
from lsp_server.backends.remote.http import RemoteError

ENGINES = ("llama-server", "openai", "ollama")
OPENAI_MAX_STOP = 4


@dataclass(frozen=True)
class Piece:
    """One streamed event: new text, its token ids where the engine says them, and at
    the end the reason and the engine's counts."""

    text: str = ""
    tokens: tuple[int, ...] = ()
    done: bool = False
    finish: str = ""  # "eos", "stop", "length" when done
    prompt_tokens: int | None = None  # prompt tokens the engine saw
    evaluated: int | None = None  # prompt tokens it had to evaluate
    reused: int | None = None  # prompt tokens taken from its cache
    generated: int | None = None
    prompt_ms: float | None = None
    decode_ms: float | None = None


def sse_data(lines: Iterable[bytes]) -> Iterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined with ``\\n``)."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise RemoteError(
            "protocol", f"{where} sent a stream event that is not JSON: {text[:80]!r}"
        ) from None


def _stream_error(event: Any, where: str) -> None:
    if isinstance(event, dict) and "error" in event:
        error = event["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RemoteError("http", f"{where} stopped the answer with an error: {str(message)[:300]}")


def _finish(reason: Any) -> str:
    reason = str(reason or "")
    if reason in ("limit", "length"):
        return "length"
    if reason in ("word", "stop_word"):
        return "stop"
    return "eos" if reason else ""


# -- llama-server ---------------------------------------------------------------------------


def llama_server_body(request: GenerationRequest, tokens: list[int]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt": tokens,
        "n_predict": request.max_tokens,
        "stream": True,
        "cache_prompt": True,
        "return_tokens": True,
        "timings_per_token": True,
        "temperature": request.temperature,
        "top_p": request.top_p,
        # Our sampler is plain top-p: switch off llama-server's other default samplers.
        "top_k": 0,
        "min_p": 0.0,
        "repeat_penalty": 1.0,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def llama_server_pieces(lines: Iterable[bytes], where: str) -> Iterator[Piece]:
    """Events of ``/completion``; with ``timings_per_token`` each carries the prompt
    counts, so they are known even when the client closes the stream early."""
    for data in sse_data(lines):
        event = _json(data, where)
        _stream_error(event, where)
        if not isinstance(event, dict):
            continue
        timings = event.get("timings") or {}
        done = bool(event.get("stop"))
        yield Piece(
            text=str(event.get("content") or ""),
            tokens=tuple(int(t) for t in event.get("tokens") or ()),
            done=done,
            finish=_finish(event.get("stop_type") or "eos") if done else "",
            prompt_tokens=event.get("tokens_evaluated"),
            evaluated=timings.get("prompt_n"),
            reused=timings.get("cache_n"),
            generated=event.get("tokens_predicted") if done else None,
            prompt_ms=timings.get("prompt_ms"),
            decode_ms=timings.get("predicted_ms") if done else None,
        )
        if done:
            return
    raise RemoteError("dropped", f"the stream from {where} ended before its last event")


# -- OpenAI-compatible ----------------------------------------------------------------------


def openai_body(request: GenerationRequest, tokens: list[int], model: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "prompt": tokens,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.stop:
        # The OpenAI API (and vLLM, which validates it) takes at most 4 stop strings: the
        # rest are applied here as the stream arrives (all of them are, in any case).
        body["stop"] = list(request.stop)[:OPENAI_MAX_STOP]
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def api_root(engine: str, endpoint: str) -> str:
    """The URL the engine's paths are added to. OpenAI clients name a server by its base
    URL with ``/v1`` (``http://host:8000/v1``); the paths here add ``/v1`` themselves, and
    vLLM's ``/tokenize`` is at the root, so for ``openai`` a trailing ``/v1`` is dropped."""
    root = endpoint.strip().rstrip("/")
    if engine == "openai" and root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root


def tokenize_body(
    engine: str, text: str, model: str, *, special: bool, add_special: bool
) -> dict[str, Any]:
    """``POST /tokenize``: llama-server reads ``content``/``add_special``/``parse_special``;
    vLLM reads ``prompt``/``add_special_tokens`` (``model`` optional; its tokenizer parses
    special tokens in text anyway). Behind ``openai`` either may answer, so both dialects
    are sent: each ignores the other's fields."""
    body: dict[str, Any] = {"content": text, "add_special": add_special, "parse_special": special}
    if engine == "openai":
        body.update(prompt=text, add_special_tokens=add_special)
        if model:
            body["model"] = model
    return body


def openai_pieces(lines: Iterable[bytes], where: str) -> Iterator[Piece]:
    finish = ""
    for data in sse_data(lines):
        if data.strip() == "[DONE]":
            yield Piece(done=True, finish=finish or "eos")
            return
        event = _json(data, where)
        _stream_error(event, where)
        if not isinstance(event, dict):
            continue
        text = ""
        for choice in event.get("choices") or ():
            text += str(choice.get("text") or "")
            finish = _finish(choice.get("finish_reason")) or finish
        usage = event.get("usage") or {}
        timings = event.get("timings") or {}
        if usage or timings:
            details = usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens", timings.get("cache_n"))
            prompt = usage.get("prompt_tokens")
            yield Piece(
                text=text,
                prompt_tokens=prompt,
                reused=cached,
                evaluated=timings.get(
                    "prompt_n",
                    prompt - cached if prompt is not None and cached is not None else None,
                ),
                generated=usage.get("completion_tokens"),
                prompt_ms=timings.get("prompt_ms"),
                decode_ms=timings.get("predicted_ms"),
            )
        elif text:
            yield Piece(text=text)
    raise RemoteError("dropped", f"the stream from {where} ended without [DONE]")


# -- Ollama ---------------------------------------------------------------------------------


def ollama_body(request: GenerationRequest, prompt: str, model: str, n_ctx: int) -> dict[str, Any]:
    options: dict[str, Any] = {
        "num_predict": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": 0,
        "num_ctx": n_ctx,
    }
    if request.stop:
        options["stop"] = list(request.stop)
    if request.seed is not None:
        options["seed"] = request.seed
    return {"model": model, "prompt": prompt, "raw": True, "stream": True, "options": options}


def ollama_pieces(lines: Iterable[bytes], where: str) -> Iterator[Piece]:
    for raw in lines:
        if not raw.strip():
            continue
        event = _json(raw.decode("utf-8", "replace"), where)
        _stream_error(event, where)
        if not isinstance(event, dict):
            continue
        if not event.get("done"):
            yield Piece(text=str(event.get("response") or ""))
            continue
        evaluated = event.get("prompt_eval_count")
        yield Piece(
            text=str(event.get("response") or ""),
            done=True,
            finish=_finish(event.get("done_reason") or "stop"),
            evaluated=evaluated,
            generated=event.get("eval_count"),
            prompt_ms=_ns_to_ms(event.get("prompt_eval_duration")),
            decode_ms=_ns_to_ms(event.get("eval_duration")),
        )
        return
    raise RemoteError("dropped", f"the stream from {where} ended before done")


def _ns_to_ms(value: Any) -> float | None:
    return float(value) / 1e6 if isinstance(value, (int, float)) else None
