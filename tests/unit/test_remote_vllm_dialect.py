"""The ``openai`` backend against a loopback stand-in that speaks vLLM's dialect as vLLM
0.32 does (the real vLLM: tests/e2e/test_remote_vllm.py, when it is installed):

- the endpoint is often written with its ``/v1`` (the OpenAI convention);
- ``/v1/models`` gives ``max_model_len``;
- ``/tokenize`` is at the root and reads ``prompt`` and ``add_special_tokens`` (default
  true): without ``prompt`` it answers 400, as vLLM's request validation does;
- the stream's last event before ``[DONE]`` has no choices, only ``usage``;
- ``stop`` takes at most 4 strings (400 otherwise), as in OpenAI's API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from lsp_server.backends.base import CancelToken, GenerationRequest
from lsp_server.backends.remote import apis
from lsp_server.backends.remote.backend import RemoteBackend, RemoteConfig
from lsp_server.backends.remote.http import HttpOptions
from tests.remote_standin import StandIn, sse

BOS = 2
MODEL = "gemma3-270m"


def _ids(text: str) -> list[int]:
    return [100 + b for b in text.encode()]


def _vllm(method: str, path: str, body: Any) -> tuple[int, str, list[bytes]]:
    if path == "/v1/models":
        card = {"id": MODEL, "object": "model", "owned_by": "vllm", "max_model_len": 3072}
        return 200, "application/json", [json.dumps({"object": "list", "data": [card]}).encode()]
    if path == "/tokenize":
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            detail = {"error": {"message": "prompt: Field required", "type": "BadRequestError", "code": 400}}
            return 400, "application/json", [json.dumps(detail).encode()]
        ids = ([BOS] if body.get("add_special_tokens", True) else []) + _ids(body["prompt"])
        answer = {"count": len(ids), "max_model_len": 3072, "tokens": ids, "token_strs": None}
        return 200, "application/json", [json.dumps(answer).encode()]
    if path == "/v1/completions":
        if len(body.get("stop") or ()) > 4:
            detail = {"error": {"message": "stop: List should have at most 4 items", "code": 400}}
            return 400, "application/json", [json.dumps(detail).encode()]
        chunk = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": MODEL}
        events: list[Any] = [
            {**chunk, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": None,
                                   "stop_reason": None}]}  # fmt: skip
            for text in ("if", " n", " <", " 2", ":")
        ]
        events[-1]["choices"][0].update(finish_reason="length")
        usage = {"prompt_tokens": len(body["prompt"]), "total_tokens": len(body["prompt"]) + 5,
                 "completion_tokens": 5, "prompt_tokens_details": None}  # fmt: skip
        events += [{**chunk, "choices": [], "usage": usage}, b"[DONE]"]
        return 200, "text/event-stream", sse(events)
    return 404, "application/json", [b'{"detail": "Not Found"}']


@pytest.fixture
def vllm() -> Iterator[StandIn]:
    stand_in = StandIn(_vllm)
    yield stand_in
    stand_in.close()


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_endpoint_with_or_without_v1(vllm: StandIn, suffix: str) -> None:
    backend = RemoteBackend(RemoteConfig("openai", vllm.url + suffix, http=HttpOptions(timeout_s=5)))
    assert backend.model == MODEL and backend.info.n_ctx == 3072
    assert {seen.path for seen in vllm.seen} >= {"/v1/models", "/tokenize"}
    assert not any(seen.path.startswith("/v1/v1") for seen in vllm.seen)


def test_tokenize_speaks_vllms_dialect(vllm: StandIn) -> None:
    backend = RemoteBackend(RemoteConfig("openai", vllm.url, http=HttpOptions(timeout_s=5)))
    assert backend.info.bos == (BOS,)  # learnt from add_special_tokens on and off
    assert backend.tokenize("ab") == _ids("ab")
    sent = [seen.body for seen in vllm.seen if seen.path == "/tokenize"]
    assert all(body["model"] == MODEL for body in sent)
    assert {body["add_special_tokens"] for body in sent} == {True, False}


def test_generation_reads_text_and_the_usage_event(vllm: StandIn) -> None:
    backend = RemoteBackend(RemoteConfig("openai", vllm.url + "/v1", http=HttpOptions(timeout_s=5)))
    request = GenerationRequest(prompt="def f(n):\n    ", max_tokens=5)
    result = backend.generate(request, CancelToken())
    sent = vllm.seen[-1]
    assert sent.path == "/v1/completions" and sent.body["prompt"][0] == BOS
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert result.text == "if n < 2:" and result.stop_reason == "length"
    assert result.token_count == 5 and result.prompt_tokens == len(sent.body["prompt"])


def test_more_than_four_stop_strings_all_apply(vllm: StandIn) -> None:
    backend = RemoteBackend(RemoteConfig("openai", vllm.url, http=HttpOptions(timeout_s=5)))
    stops = ("\ndef", "\nclass", "\nif", "\n#", " <")  # the fifth is met in the stream
    request = GenerationRequest(prompt="def f(n):\n    ", max_tokens=5, stop=stops)
    result = backend.generate(request, CancelToken())
    assert vllm.seen[-1].body["stop"] == list(stops[:4])
    assert result.text == "if n" and result.stop_reason == "stop"


def test_llama_server_tokenize_body_is_unchanged() -> None:
    assert apis.tokenize_body("llama-server", "x", "m", special=True, add_special=False) == {
        "content": "x",
        "add_special": False,
        "parse_special": True,
    }
    assert apis.api_root("llama-server", "http://h:8080/v1/") == "http://h:8080/v1"
