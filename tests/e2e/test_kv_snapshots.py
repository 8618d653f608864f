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

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=2048, n_threads=2,
                           adaptive_threads=False)
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

        # The same work without saved states: `there` evaluated, then the return's new
        # tokens on top of it (the prompt cache), never leaving. A restored state must
        # give exactly what that gives. (Not a cold evaluation of `back` in one batch:
        # other batch shapes round differently and near-tied tokens then go either way,
        # as they did on an AVX-512 machine.)
        backend.kv_cache.resize(0)
        backend._cached = []
        again = backend.generate(_request(there), CancelToken())
        assert again.evaluated_tokens == again.prompt_tokens and again.text == first.text
        stayed = backend.generate(_request(back), CancelToken())
        assert stayed.evaluated_tokens == returned.evaluated_tokens
        assert stayed.text == returned.text
        assert stayed.token_count == returned.token_count
    finally:
        backend.close()


def test_no_saved_states_with_a_zero_bound(embedded_model_path: Path) -> None:
    from lsp_server.backends.llama import LlamaBackend

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=2048, n_threads=2,
                           adaptive_threads=False)
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
