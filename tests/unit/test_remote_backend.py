"""RemoteBackend's llama-server and OpenAI paths against loopback stand-ins: what is sent,
what is read back, and where the client stops (the real engine: tests/e2e)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lsp_server.backends.base import Cancelled, CancelToken, GenerationRequest
from lsp_server.backends.remote.backend import RemoteBackend, RemoteConfig
from lsp_server.backends.remote.http import HttpOptions
from tests.remote_standin import StandIn, sse

BOS = 2
STREAM = [
    ("x", [120]),
    (" =", [32, 61]),
    (" 1", [32, 49]),
    ("\n", [10]),
    ("<end>", [999]),
    ("y", [121]),
]


def _ids(text: str) -> list[int]:
    return list(text.encode())


def _llama_server(method: str, path: str, body: Any) -> tuple[int, str, list[bytes]]:
    if path == "/props":
        return (
            200,
            "application/json",
            [b'{"default_generation_settings": {"n_ctx": 4096}, "total_slots": 2}'],
        )
    if path == "/tokenize":
        ids = ([BOS] if body.get("add_special") else []) + _ids(body["content"])
        return 200, "application/json", [b'{"tokens": %s}' % str(ids).encode()]
    if path == "/completion":
        events: list[Any] = [
            {
                "content": text,
                "tokens": tokens,
                "stop": False,
                "timings": {"prompt_n": 4, "cache_n": 20},
            }
            for text, tokens in STREAM[: body["n_predict"]]
        ]
        events.append({"content": "", "tokens": [], "stop": True, "stop_type": "limit", "tokens_predicted": 6,
                       "tokens_evaluated": 24, "timings": {"prompt_n": 4, "cache_n": 20, "prompt_ms": 2.5}})  # fmt: skip
        return 200, "text/event-stream", sse(events)
    return 404, "text/plain", [b"File Not Found"]


@pytest.fixture
def engine() -> Iterator[StandIn]:
    stand_in = StandIn(_llama_server, delay_s=0.02)
    yield stand_in
    stand_in.close()


def _backend(engine: StandIn) -> RemoteBackend:
    return RemoteBackend(RemoteConfig("llama-server", engine.url, http=HttpOptions(timeout_s=5)))


def test_start_up_reads_n_ctx_bos_and_uses_the_engines_tokenizer(engine: StandIn) -> None:
    backend = _backend(engine)
    assert backend.info.n_ctx == 4096 and backend.info.bos == (BOS,)
    assert backend.info.fim is None  # no GGUF here: no FIM template
    assert backend.tokenize("ab") == [97, 98]


def test_sends_token_ids_with_cache_prompt_and_no_slot(engine: StandIn) -> None:
    backend = _backend(engine)
    request = GenerationRequest(prompt="x", prompt_tokens=(BOS, 120), max_tokens=3, stop=("\ndef",))
    result = backend.generate(request, CancelToken())
    body = engine.seen[-1].body
    assert body["prompt"] == [BOS, 120] and body["stream"] and body["cache_prompt"]
    assert "id_slot" not in body and body["stop"] == ["\ndef"] and body["n_predict"] == 3
    assert (result.text, result.stop_reason, result.token_count) == ("x = 1", "length", 6)
    assert (result.evaluated_tokens, result.reused_tokens, result.prompt_tokens) == (4, 20, 24)


def test_end_of_fill_token_stops_and_closes(engine: StandIn) -> None:
    backend = _backend(engine)
    request = GenerationRequest(
        prompt="x", prompt_tokens=(BOS,), max_tokens=6, stop_token_ids=frozenset({999})
    )
    result = backend.generate(request, CancelToken())
    assert (result.text, result.stop_reason) == ("x = 1\n", "eos")
    assert result.evaluated_tokens == 4 and result.reused_tokens == 20  # known before the end
    assert engine.seen[-1].done.wait(5) and engine.seen[-1].closed_early


def test_max_tokens_past_the_context_is_capped_not_the_prompt(engine: StandIn, caplog) -> None:  # type: ignore[no-untyped-def]
    """max_tokens >= n_ctx used to leave room for 1 prompt token: the prompt was cut to its
    BOS. Now max_tokens is capped at half the context (said once) and the prompt is kept."""
    backend = _backend(engine)
    n_ctx = backend.info.n_ctx
    prompt = (BOS, *range(100, 400))
    with caplog.at_level("WARNING", logger="lsp_server.backends.remote.backend"):
        for _ in range(2):
            backend.generate(GenerationRequest(prompt="x", prompt_tokens=prompt, max_tokens=n_ctx + 10),
                             CancelToken())
            body = engine.seen[-1].body
            assert body["prompt"] == list(prompt)
            assert body["n_predict"] == n_ctx // 2
    capped = [r for r in caplog.records if "max_tokens" in r.getMessage()]
    assert len(capped) == 1, [r.getMessage() for r in caplog.records]
    # A max_tokens that leaves half the context for the prompt is sent as it is.
    backend.generate(GenerationRequest(prompt="x", prompt_tokens=prompt, max_tokens=n_ctx // 2),
                     CancelToken())
    assert engine.seen[-1].body["n_predict"] == n_ctx // 2


def test_cancelled_before_the_first_token() -> None:
    stand_in = StandIn(_llama_server, delay_s=0.5)
    try:
        backend = _backend(stand_in)
        token = CancelToken()
        token.cancel("superseded")
        with pytest.raises(Cancelled):
            backend.generate(GenerationRequest(prompt="x", prompt_tokens=(BOS,)), token)
    finally:
        stand_in.close()


def test_openai_uses_v1_models_and_sends_ids() -> None:
    def route(method: str, path: str, body: Any) -> tuple[int, str, list[bytes]]:
        if path == "/v1/models":
            return (
                200,
                "application/json",
                [b'{"data": [{"id": "Qwen/Qwen2.5-Coder-1.5B", "max_model_len": 8192}]}'],
            )
        if path == "/tokenize":
            return (
                200,
                "application/json",
                [b'{"tokens": %s}' % str(_ids(body["content"])).encode()],
            )
        if path == "/v1/completions":
            return (
                200,
                "text/event-stream",
                sse([{"choices": [{"text": "pass", "finish_reason": "stop"}]}, b"[DONE]"]),
            )
        return 404, "application/json", [b'{"detail": "Not Found"}']

    stand_in = StandIn(route)
    try:
        backend = RemoteBackend(RemoteConfig("openai", stand_in.url, http=HttpOptions(timeout_s=5)))
        assert backend.info.n_ctx == 8192 and backend.model == "Qwen/Qwen2.5-Coder-1.5B"
        result = backend.generate(
            GenerationRequest(prompt="x", prompt_tokens=(1, 2), max_tokens=5), CancelToken()
        )
        sent = stand_in.seen[-1].body
        assert (
            sent["prompt"] == [1, 2]
            and sent["model"] == "Qwen/Qwen2.5-Coder-1.5B"
            and "suffix" not in sent
        )
        assert (result.text, result.stop_reason) == ("pass", "eos")
    finally:
        stand_in.close()


def test_keep_alive_one_connection_for_many_requests_but_a_cut_stream_is_closed() -> None:
    stand_in = StandIn(_llama_server, keep_alive=True)
    try:
        backend = _backend(stand_in)
        whole = GenerationRequest(prompt="x", prompt_tokens=(BOS, 120), max_tokens=3)
        for _ in range(3):
            assert backend.generate(whole, CancelToken()).stop_reason == "length"
        ports = {seen.client_port for seen in stand_in.seen}
        assert len(ports) == 1 and backend.pool.opened == 1  # start-up and 3 streams, one connection
        assert stand_in.seen[-1].headers["connection"] == "keep-alive"
        cut = GenerationRequest(prompt="x", prompt_tokens=(BOS, 120), max_tokens=6, stop=("1",))
        assert backend.generate(cut, CancelToken()).stop_reason == "stop"  # closed early: ...
        stand_in.seen[-1].done.wait(5)
        backend.generate(whole, CancelToken())
        assert stand_in.seen[-1].client_port != stand_in.seen[-2].client_port  # ... not reused
        assert backend.pool.opened == 2
    finally:
        stand_in.close()


def test_a_down_engine_costs_one_connection_per_backoff_interval(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The engine goes away under a loaded backend: requests fail at once, without a
    connection attempt, until the next try is due; then suggestions resume."""
    import time

    from lsp_server.backends.remote import http
    from lsp_server.backends.remote.http import RemoteError
    from lsp_server.backends.remote.recovery import Backoff

    stand_in = StandIn(_llama_server)
    backend = _backend(stand_in)
    port = stand_in.server.server_address[1]
    backend._backoff = Backoff(initial_s=0.3)
    lost: list[RemoteError] = []
    backend.on_unreachable = lost.append
    attempts: list[tuple[str, int]] = []
    connect = http._connect

    def counting(host: str, port: int, *args: Any) -> Any:
        attempts.append((host, port))
        return connect(host, port, *args)

    monkeypatch.setattr(http, "_connect", counting)
    stand_in.close()  # the engine is gone
    request = GenerationRequest(prompt="x", prompt_tokens=(BOS, 120), max_tokens=3)
    for _ in range(30):
        with pytest.raises(RemoteError, match="connection refused"):
            backend.generate(request, CancelToken())
    assert len(attempts) == 1 and len(lost) == 1
    time.sleep(0.35)
    again = StandIn(_llama_server, port=port)  # back, on the same port
    try:
        assert backend.generate(request, CancelToken()).text  # due: tried, and served
        assert len(attempts) == 2 and backend._down is None
    finally:
        again.close()
