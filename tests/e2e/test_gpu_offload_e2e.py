"""End-to-end: ``nGpuLayers`` with the real server and the embedded model.

On a CPU-only build (this project's machine and CI), or a GPU build that sees no GPU,
asking for every layer on a GPU is one clear warning, and the model serves from the CPU.
On a GPU build with a visible GPU (README, GPU: the run on an H200), every layer is
offloaded and the model serves."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import INLINE_CLIENT, inline_params, open_document

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

llama_cpp = pytest.importorskip("llama_cpp")


def _machine() -> tuple[bool, bool]:
    from lsp_server.backends.devices import gpu_devices
    from lsp_server.backends.llama import system_info

    return bool(system_info()["gpu_offload"]), bool(gpu_devices(llama_cpp))


# A GPU backend built in; a GPU it can use.
GPU_BUILD, GPU_SEEN = _machine()

BODY = 'def greet(name: str) -> str:\n    """Return a greeting for name."""\n    '
# Every layer; the budget is not what these tests measure.
OPTIONS = {"nGpuLayers": -1, "timeBudgetMs": 4000}


@pytest_lsp.fixture(scope="module", loop_scope="module",
                    config=ClientServerConfig(server_command=SERVER_COMMAND))  # fmt: skip
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=INLINE_CLIENT, initialization_options=OPTIONS)
    )
    yield
    await lsp_client.shutdown_session()


async def suggest(client: LanguageClient, name: str) -> str:
    uri = f"file:///tmp/ghostpilot-e2e/{name}.py"
    open_document(client, uri, BODY)
    result = await client.text_document_inline_completion_async(inline_params(uri, 2, 4))
    items = result.items if isinstance(result, types.InlineCompletionList) else result or []
    assert items and isinstance(items[0].insert_text, str)
    return items[0].insert_text


async def offload_warnings(client: LanguageClient) -> list[str]:
    """The warnings shown about GPU offload, after the ready message had time to land."""
    for _ in range(50):
        if any("ready" in m.message for m in client.log_messages):
            break
        await asyncio.sleep(0.1)
    return [m.message for m in client.messages
            if m.type == types.MessageType.Warning and "nGpuLayers" in m.message]


@pytest.mark.skipif(GPU_SEEN, reason="a GPU is visible to this build")
async def test_without_a_usable_gpu_one_warning_and_the_cpu_serves(client: LanguageClient):
    """A CPU-only build, or a GPU build on a machine without a visible GPU."""
    first = await suggest(client, "offload_a")
    second = await suggest(client, "offload_b")
    assert first.strip() and second.strip()
    [warning] = await offload_warnings(client)
    [ready] = [m.message for m in client.log_messages if "ready" in m.message]
    if GPU_BUILD:
        assert "nGpuLayers is -1, but this GPU build of llama-cpp-python sees no GPU" in warning
        assert "GPU layers -1; CPU only (no GPU visible)" in ready
    else:
        assert "nGpuLayers is -1, but this llama-cpp-python build has no GPU support" in warning
        assert "-DGGML_CUDA=on" in warning
        assert "GPU layers -1; CPU only (this build has no GPU support)" in ready
    assert "runs on the CPU" in warning


@pytest.mark.skipif(not GPU_SEEN, reason="no GPU visible to this llama-cpp-python build")
async def test_gpu_build_offloads_every_layer_and_serves(client: LanguageClient):
    assert (await suggest(client, "offload_gpu")).strip()
    assert await offload_warnings(client) == []
    [ready] = [m.message for m in client.log_messages if "ready" in m.message]
    assert "GPU layers -1; 19/19 layers on " in ready  # Gemma 3 270M: 18 blocks + output


async def test_doctor_reports_where_the_layers_run() -> None:
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "lsp_server", "doctor", "--n-gpu-layers", "-1"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    if GPU_SEEN:
        assert "  GPU offload: supported; CUDA0 (" in result.stdout or "Metal" in result.stdout
        assert "GPU layers: -1 -> 19/19 layers on " in result.stdout
    elif GPU_BUILD:
        assert "  GPU offload: supported by this build, but no GPU is visible" in result.stdout
        assert "GPU layers: -1 -> CPU only (no GPU visible)" in result.stdout
        assert result.stderr.count("warning: nGpuLayers is -1") == 1
    else:
        assert "  GPU offload: not in this build (CPU only); to offload, rebuild" in result.stdout
        assert "GPU layers: -1 -> CPU only (this build has no GPU support)" in result.stdout
        assert result.stderr.count("warning: nGpuLayers is -1") == 1
