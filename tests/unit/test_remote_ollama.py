"""Ollama contract: RemoteBackend against a loopback stand-in that follows Ollama's
documented ``POST /api/generate`` streaming format (NDJSON, ``raw``, ``options``, the last
object ``done`` with ``done_reason`` and counts). No Ollama server can be installed here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from lsp_server.backends.base import CancelToken, GenerationRequest, ModelUnavailable
from lsp_server.backends.remote.backend import RemoteBackend, RemoteConfig
from lsp_server.backends.remote.http import HttpOptions
from tests.remote_standin import StandIn, ndjson, words

ANSWER = "    return sum(xs) / len(xs)\n\n\ndef median(xs):\n    pass\n"


def _ollama(text: str, known: str = "qwen2.5-coder:1.5b-base"):  # type: ignore[no-untyped-def]
    def route(method: str, path: str, body: Any) -> tuple[int, str, list[bytes]]:
        if path == "/api/version":
            return 200, "application/json", [b'{"version": "0.12.0"}']
        if path != "/api/generate":
            return 404, "text/plain", [b"404 page not found"]
        if body["model"] != known:
            return (
                404,
                "application/json",
                [b'{"error": "model \'%s\' not found"}' % body["model"].encode()],
            )
        pieces = list(words(text))[: body["options"]["num_predict"]]
        events: list[dict[str, Any]] = [
            {"model": known, "created_at": "2025-01-01T00:00:00Z", "response": p, "done": False}
            for p in pieces
        ]
        events.append(
            {"model": known, "created_at": "2025-01-01T00:00:01Z", "response": "", "done": True,
             "done_reason": "length" if len(pieces) == body["options"]["num_predict"] else "stop",
             "total_duration": 9_000_000, "prompt_eval_count": 12, "prompt_eval_duration": 3_000_000,
             "eval_count": len(pieces), "eval_duration": 5_000_000}
        )  # fmt: skip
        return 200, "application/x-ndjson", ndjson(events)

    return route


@pytest.fixture
def engine() -> Iterator[StandIn]:
    stand_in = StandIn(_ollama(ANSWER), delay_s=0.01)
    yield stand_in
    stand_in.close()


def _backend(engine: StandIn, model: str = "qwen2.5-coder:1.5b-base") -> RemoteBackend:
    return RemoteBackend(
        RemoteConfig("ollama", engine.url, model=model, n_ctx=4096, http=HttpOptions(timeout_s=5))
    )


def test_sends_raw_text_with_options_and_reads_the_stream(engine: StandIn) -> None:
    backend = _backend(engine)
    assert backend.info.fim is None and backend.info.n_ctx == 4096  # text prompts: no FIM ids
    prompt = "def mean(xs):\n"
    request = GenerationRequest(prompt=prompt, prompt_tokens=tuple(backend.tokenize(prompt)), max_tokens=50,
                                stop=("\ndef",), seed=7)  # fmt: skip
    result = backend.generate(request, CancelToken())
    sent = engine.seen[-1].body
    assert sent["prompt"] == prompt and sent["raw"] is True and sent["stream"] is True
    assert sent["options"] == {"num_predict": 50, "temperature": 0.0, "top_p": 0.95, "top_k": 0,
                               "num_ctx": 4096, "stop": ["\ndef"], "seed": 7}  # fmt: skip
    assert result.text == "    return sum(xs) / len(xs)\n\n"  # cut client-side at the stop string
    assert result.stop_reason == "stop"
    assert engine.seen[-1].done.wait(5) and engine.seen[-1].closed_early  # stream closed at once


def test_stop_rule_closes_the_stream(engine: StandIn) -> None:
    backend = _backend(engine)
    request = GenerationRequest(
        prompt="x", max_tokens=50, stop_rule=lambda t: t.find("\n") if "\n" in t else None
    )
    result = backend.generate(request, CancelToken())
    assert (result.text, result.stop_reason) == ("    return sum(xs) / len(xs)", "rule")
    assert engine.seen[-1].done.wait(5) and engine.seen[-1].closed_early


def test_counts_from_the_last_object(engine: StandIn) -> None:
    result = _backend(engine).generate(GenerationRequest(prompt="x", max_tokens=3), CancelToken())
    assert result.stop_reason == "length" and result.token_count == 3
    assert result.evaluated_tokens == 12 and result.prompt_eval_s == pytest.approx(0.003)


def test_unknown_model_is_one_clear_message(engine: StandIn) -> None:
    backend = _backend(engine, model="nope:7b")
    with pytest.raises(ModelUnavailable, match="HTTP 404.*model 'nope:7b' not found"):
        backend.generate(GenerationRequest(prompt="x"), CancelToken())


def test_needs_a_model_tag(engine: StandIn) -> None:
    with pytest.raises(ModelUnavailable, match="needs remoteModel"):
        _backend(engine, model="")


def test_estimated_sizes_are_conservative(engine: StandIn) -> None:
    text = "def mean(xs):\n    return sum(xs) / len(xs)\n"
    assert len(_backend(engine).tokenize(text)) >= len(text.encode()) // 4


def test_remote_tokenizer_gives_fim_written_out_as_text(engine: StandIn) -> None:
    from tests.conftest import VOCAB_DIR, require_vocab

    vocab = require_vocab(VOCAB_DIR / "ggml-vocab-starcoder.gguf")
    config = RemoteConfig(
        "ollama", engine.url, model="qwen2.5-coder:1.5b-base", tokenizer=str(vocab), n_ctx=4096
    )
    backend = RemoteBackend(config)
    try:
        fim = backend.info.fim
        assert backend.info.fim_template == "starcoder" and fim is not None
        ids = (
            fim.prefix,
            *backend.tokenize("def f(x):\n    "),
            fim.suffix,
            *backend.tokenize("\n"),
            fim.middle,
        )
        backend.generate(
            GenerationRequest(prompt="def f(x):\n    ", prompt_tokens=ids, max_tokens=2),
            CancelToken(),
        )
        assert (
            engine.seen[-1].body["prompt"]
            == "<fim_prefix>def f(x):\n    <fim_suffix>\n<fim_middle>"
        )
    finally:
        backend.close()
