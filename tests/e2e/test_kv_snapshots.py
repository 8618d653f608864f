"""Saved KV states in the llama.cpp backend (backends/kvcache.py) with the embedded
model: leaving a function saves its state, coming back restores it and evaluates only
the new tokens, and what is generated then is exactly what a cold evaluation gives."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from lsp_server.backends.base import CancelToken, GenerationRequest

pytestmark = pytest.mark.e2e

pytest.importorskip("llama_cpp")

TEXTWRAP = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
HEAD = TEXTWRAP[: TEXTWRAP.index("class TextWrapper")]


def _function(name: str) -> str:
    start = TEXTWRAP.index(f"\ndef {name}(") + 1
    end = TEXTWRAP.find("\n\ndef ", start)
    return TEXTWRAP[start : end if end > 0 else len(TEXTWRAP)]


def _request(prompt: str) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, max_tokens=24, stop=("\n\n",))


def test_returning_restores_the_saved_state_and_generates_the_same(
    embedded_model_path: Path,
) -> None:
    from lsp_server.backends.llama import LlamaBackend

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=2048, n_threads=2)
    try:
        there = HEAD + _function("dedent")[:900]
        elsewhere = HEAD + _function("indent")
        back = there + "\n    # the margin"
        first = backend.generate(_request(there), CancelToken())
        assert first.evaluated_tokens == first.prompt_tokens
        moved = backend.generate(_request(elsewhere), CancelToken())
        assert moved.prompt_tokens - moved.evaluated_tokens >= 100  # the shared head
        assert backend.kv_cache.stats()["saves"] == 1  # leaving saved `there`
        returned = backend.generate(_request(back), CancelToken())
        assert backend.kv_cache.stats()["restores"] == 1
        assert returned.reused_tokens >= first.prompt_tokens - 1
        assert returned.evaluated_tokens <= 12

        backend.kv_cache.resize(0)  # cold: no saved states, nothing cached
        backend._cached = []
        cold = backend.generate(_request(back), CancelToken())
        assert cold.evaluated_tokens == cold.prompt_tokens
        assert cold.text == returned.text
        assert cold.token_count == returned.token_count
    finally:
        backend.close()


def test_no_saved_states_with_a_zero_bound(embedded_model_path: Path) -> None:
    from lsp_server.backends.llama import LlamaBackend

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=2048, n_threads=2)
    try:
        backend.kv_cache.resize(0)
        there = HEAD + _function("dedent")[:900]
        backend.generate(_request(there), CancelToken())
        backend.generate(_request(HEAD + _function("indent")), CancelToken())
        returned = backend.generate(_request(there + "\n"), CancelToken())
        assert backend.kv_cache.stats()["saves"] == 0 and backend.kv_cache.bytes == 0
        assert returned.evaluated_tokens > 100  # the function's tokens again
    finally:
        backend.close()
