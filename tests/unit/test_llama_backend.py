"""The llama.cpp backend with the embedded model: the persistent threadpool is attached,
changes no output, and is freed with the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.backends.base import CancelToken, GenerationRequest

pytest.importorskip("llama_cpp")


def test_threadpool_attached_same_output_and_freed(embedded_model_path: Path) -> None:
    from lsp_server.backends.llama import LlamaBackend, attach_threadpool

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=512, n_threads=2)
    assert backend.threadpool is not None
    request = GenerationRequest(prompt="def add(a, b):\n    return", max_tokens=12)
    pooled = backend.generate(request, CancelToken())
    assert pooled.token_count >= 1
    backend.threadpool.close()  # back to llama.cpp's per-token pools
    backend.threadpool.close()  # closing twice is harmless
    backend._cached = []  # evaluate the prompt again
    unpooled = backend.generate(request, CancelToken())
    assert unpooled.text == pooled.text
    backend.threadpool = attach_threadpool(backend._llama_cpp, backend.llm.ctx, 2)
    assert backend.threadpool is not None
    backend.close()
    assert backend.threadpool is None
