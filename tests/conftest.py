"""Shared test helpers."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.backends.devices import preload_cuda_libraries

# A CUDA build's runtime libraries, from NVIDIA's PyPI packages, loaded as the product
# loads them (before llama_cpp): tests that import llama_cpp directly need them too.
preload_cuda_libraries()

ROOT = Path(__file__).resolve().parents[1]
# Vocab-only GGUFs from the llama-cpp-python sdist, extracted by FETCH_VOCAB on first use.
VOCAB_DIR = ROOT / ".cache" / "vocab"
FETCH_VOCAB = ROOT / "scripts" / "fetch-test-vocab.py"
# Layers the end-to-end tests offload to a GPU (the server's --n-gpu-layers, the backend
# tests' n_gpu_layers): 0 here; -1 where a GPU build runs them on a GPU (README, GPU).
GPU_LAYERS = int(os.environ.get("GHOSTPILOT_TEST_GPU_LAYERS", "0"))
SERVER_COMMAND = [sys.executable, "-m", "lsp_server", "serve",
                  *(["--n-gpu-layers", str(GPU_LAYERS)] if GPU_LAYERS else [])]


@pytest.fixture(scope="session")
def embedded_model_path() -> Path:
    from lsp_server.backends.registry import embedded_model_path

    return embedded_model_path()


@functools.lru_cache(maxsize=1)
def fetch_vocab() -> str:
    """Run FETCH_VOCAB once per session (a download of the sdist the first time on a
    machine, then a few seconds); what it said on failure, or "" when it worked."""
    result = subprocess.run([sys.executable, str(FETCH_VOCAB), str(VOCAB_DIR)],
                            capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return ""
    return result.stderr.strip()[-3000:] or f"{FETCH_VOCAB.name} exited {result.returncode}"


def require_vocab(path: Path) -> Path:
    """A vocab-only GGUF in VOCAB_DIR, fetched (or refreshed for a new pinned version) on
    first use. Where it cannot be fetched (offline, say), skip with the reason, but fail
    under CI=true, where a skip would hide the tokenizer and FIM tests."""
    error = fetch_vocab()
    if not path.exists():
        message = (f"vocab GGUF not available: {path}\n{error}" if error else
                   f"vocab GGUF not available: {path} ({FETCH_VOCAB.name} does not extract it)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
