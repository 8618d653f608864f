"""End-to-end: corrupt and hostile model files give a clear error and the real server
keeps serving; switching back to the embedded model gives suggestions again.

- a model that llama.cpp loads and then aborts on (a norm weight's type changed to I32:
  no header check sees it), set through ``initializationOptions`` and, later, again at
  run time: the child-process check turns the abort into a message;
- headers that would abort llama.cpp (``rms_epsilon = -1`` on the first completion, NaN,
  ``block_count = 1000`` while loading), switched to with ``didChangeConfiguration``:
  refused by the header check, naming the field.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.backends.registry import embedded_model_path
from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import PLAIN_CLIENT, open_document
from tests.hostile_gguf import I32_TYPE, patched

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BODY = 'def greet(name: str) -> str:\n    """Return a greeting for name."""\n    '
URI = "file:///tmp/ghostpilot-e2e/hostile-model.py"
EPS = "gemma3.attention.layer_norm_rms_epsilon"


def hostile_models(folder: Path) -> dict[str, Path]:
    real = embedded_model_path()
    return {
        "crash": patched(
            real, folder / "norm-as-i32.gguf",
            tensor_types={"blk.0.attn_norm.weight": I32_TYPE}, sparse=False,
        ),
        "eps": patched(real, folder / "eps-negative.gguf", {EPS: -1.0}),
        "nan": patched(real, folder / "eps-nan.gguf", {EPS: float("nan")}),
        "layers": patched(real, folder / "layers-1000.gguf", {"gemma3.block_count": 1000}),
    }  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hostile_models(tmp_path_factory.mktemp("hostile-models"))


@pytest_lsp.fixture(scope="module", loop_scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient, models: dict[str, Path]):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=PLAIN_CLIENT, initialization_options={"model": str(models["crash"])}
        )
    )
    yield
    await lsp_client.shutdown_session()


async def settled_state(client: LanguageClient) -> dict[str, Any]:
    """ghostpilot/stats once the model has loaded or failed to."""
    for _ in range(600):
        stats = await client.protocol.send_request_async("ghostpilot/stats", None)
        if stats.modelState not in ("loading", "unloaded"):
            return {"state": stats.modelState, "model": stats.model}
        await asyncio.sleep(0.2)
    raise AssertionError("the model neither loaded nor failed in 120 s")


async def switch(client: LanguageClient, model: str) -> None:
    """Set ``model``; return once the server's state has moved (at most 10 s), so that a
    busy machine's late switch is not read as the old model's state."""
    before = await client.protocol.send_request_async("ghostpilot/stats", None)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ghostpilot": {"model": model}})
    )
    for _ in range(100):
        stats = await client.protocol.send_request_async("ghostpilot/stats", None)
        if (stats.modelState, stats.model) != (before.modelState, before.model):
            return
        await asyncio.sleep(0.1)


def completion(line: int, character: int) -> types.CompletionParams:
    return types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        position=types.Position(line=line, character=character),
        context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
    )


async def still_serving(client: LanguageClient) -> None:
    """Requests of other kinds, and completion itself, still get answers."""
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=3)),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert "Regenerate docstring" in [action.title for action in actions or []], actions
    result = await client.text_document_completion_async(completion(2, 4))
    assert result is not None and len(result.items) == 0


def logged(client: LanguageClient, text: str) -> list[str]:
    return [m.message for m in client.log_messages if text in m.message]


async def test_hostile_models_give_errors_and_the_server_keeps_serving(
    client: LanguageClient, models: dict[str, Path]
):
    open_document(client, URI, BODY)
    # Set at start-up: llama.cpp would load it in-process, then abort on the first completion.
    assert (await settled_state(client))["state"] == "error"
    await still_serving(client)
    crashed = logged(client, "llama.cpp crashed on its first evaluation (SIGABRT")
    assert crashed and str(models["crash"]) in crashed[0], [m.message for m in client.log_messages]
    shown = [m.message for m in client.messages if "llama.cpp crashed" in m.message]
    assert len(shown) == 1, shown

    expected = {
        "eps": f"{EPS} = -1 (a normalisation epsilon must be a finite number above 0",
        "nan": f"{EPS} = nan",
        "layers": "gemma3.block_count = 1000 is out of range (1 to 512)",
    }
    for name, message in expected.items():
        await switch(client, str(models[name]))
        assert (await settled_state(client))["state"] == "error"
        await still_serving(client)
        assert logged(client, message), (name, [m.message for m in client.log_messages][-3:])

    # Back to the embedded model: suggestions again, without a restart.
    await switch(client, "gemma3-270m")
    assert await settled_state(client) == {"state": "ready", "model": "gemma3-270m"}
    result = await client.text_document_completion_async(completion(2, 4))
    assert result is not None and len(result.items) == 1 and result.items[0].text_edit

    # The crashing model again, at run time: refused again (its verdict is cached).
    before = len(logged(client, "llama.cpp crashed"))
    await switch(client, str(models["crash"]))
    assert (await settled_state(client))["state"] == "error"
    await still_serving(client)
    assert len(logged(client, "llama.cpp crashed")) > before
