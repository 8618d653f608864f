"""The llama.cpp backend with the embedded model (loaded in this process): what it puts
on ``ModelInfo``, the persistent threadpool (attached, changes no output, freed with the
model), the thread governor's count reaching llama.cpp, ``ban_first`` and the
flash-attention setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.backends.base import CancelToken, GenerationRequest
from tests.conftest import GPU_LAYERS

pytestmark = pytest.mark.e2e

pytest.importorskip("llama_cpp")


def test_model_info_carries_bos_and_no_fim_for_gemma(embedded_model_path: Path) -> None:
    """Gemma 3 base has FIM-looking markers but was not trained for FIM; it starts
    prompts with BOS. The backend's own tokenizing of a prompt starts with ``info.bos``."""
    from lsp_server.backends.llama import LlamaBackend

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=256, n_threads=2,
                           n_gpu_layers=GPU_LAYERS)
    try:
        info = backend.info
        assert (info.fim, info.fim_template) == (None, None)
        assert info.bos == (backend.llm.token_bos(),)
        # Gemma 3 270M: 18 blocks and the output layer, on the CPU unless a GPU run asks.
        expected = "CPU only (nGpuLayers 0)" if not GPU_LAYERS else "19/19 layers on "
        assert info.offload.startswith(expected) and info.offload_warning == ""
        request = GenerationRequest(prompt="x = 1", max_tokens=4)
        assert backend.request_tokens(request) == [*info.bos, *backend.tokenize("x = 1")]
    finally:
        backend.close()


def test_threadpool_attached_same_output_and_freed(embedded_model_path: Path) -> None:
    from lsp_server.backends.llama import LlamaBackend
    from lsp_server.backends.threadpool import attach_threadpool

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=512, n_threads=2,
                           n_gpu_layers=GPU_LAYERS, adaptive_threads=False)  # the same text twice
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


def test_the_governors_thread_count_reaches_both_contexts(embedded_model_path: Path) -> None:
    """What backends/threads.py chooses is what llama.cpp decodes with: the main context
    and the batch context of tested suggestions; with the governor off, the configured
    count stays."""
    from lsp_server.backends.llama import LlamaBackend

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=512, n_threads=2,
                           n_gpu_layers=GPU_LAYERS)
    llama_cpp = backend._llama_cpp
    try:
        request = GenerationRequest(prompt="def add(a, b):\n    return", max_tokens=12)
        first = backend.generate(request, CancelToken())
        assert llama_cpp.llama_n_threads(backend.llm.ctx) == 2
        assert backend.threads_stats() is not None and backend.threads_stats()["inUse"] == 2
        assert backend.governor is not None
        backend.governor.current = 1  # as after a slow spell
        backend._cached = []  # evaluate the prompt again, with one thread
        again = backend.generate(request, CancelToken())
        assert again.token_count >= 1 and first.token_count >= 1
        assert llama_cpp.llama_n_threads(backend.llm.ctx) == 1
        assert llama_cpp.llama_n_threads_batch(backend.llm.ctx) == 1
        drawn = backend.sample_batch(GenerationRequest(prompt="def add(a, b):\n", max_tokens=8,
                                                       temperature=0.8, seed=1), 2, CancelToken())
        assert len(drawn) == 2
        assert llama_cpp.llama_n_threads(backend._batch._ctx) == 1
    finally:
        backend.close()
    fixed = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=256, n_threads=2,
                         n_gpu_layers=GPU_LAYERS, adaptive_threads=False)
    try:
        assert fixed.governor is None and fixed.threads_stats() is None
        fixed.generate(GenerationRequest(prompt="x = ", max_tokens=4), CancelToken())
        assert fixed._llama_cpp.llama_n_threads(fixed.llm.ctx) == 2
    finally:
        fixed.close()


COMMENTED = (
    "def f():\n    # step 1: load\n    x = 1\n    # step 2: add\n    y = 2\n    return x + y\n\n\n"
    "def g():\n"
)
PLAIN = 'def add(a, b):\n    """Return the sum of a and b."""\n'


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_ban_first_keeps_a_comment_off_the_first_line_only(
    embedded_model_path: Path, temperature: float
) -> None:
    from lsp_server.backends.llama import LlamaBackend

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=512, n_threads=2,
                           n_gpu_layers=GPU_LAYERS)

    def run(prompt: str, ban: tuple[str, ...]) -> str:
        request = GenerationRequest(prompt=prompt, max_tokens=24, temperature=temperature,
                                    seed=1, ban_first=ban)
        return backend.generate(request, CancelToken()).text

    free = run(COMMENTED, ())
    assert free.lstrip().startswith("#"), free  # the model's own choice: a comment first
    banned = run(COMMENTED, ("#",))
    assert banned.strip() and not banned.lstrip().startswith("#"), banned
    # Both draws below from the same cache state (the prompt cached, its last token
    # evaluated again): a fresh prompt is computed with other shapes, which can round
    # differently (tests/greedy_ties.py).
    run(PLAIN, ())
    plain = run(PLAIN, ())
    assert not plain.lstrip().startswith("#")
    assert run(PLAIN, ("#",)) == plain  # nothing to avoid: the same draw


@pytest.mark.parametrize(("setting", "expected"), [("auto", True), ("on", True), ("off", False)])
def test_flash_attention_setting(embedded_model_path: Path, setting: str, expected: bool) -> None:
    from lsp_server.backends.llama import LlamaBackend

    backend = LlamaBackend(str(embedded_model_path), name="embedded", n_ctx=256, n_threads=2,
                           n_gpu_layers=GPU_LAYERS, flash_attention=setting)
    assert backend.flash_attention is expected
    assert backend.llm.context_params.flash_attn_type == int(expected)
    result = backend.generate(GenerationRequest(prompt="x = 1\ny =", max_tokens=4), CancelToken())
    assert result.token_count >= 1
    backend.close()
