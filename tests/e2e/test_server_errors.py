"""End-to-end: the completion fallback, and bad input answered with clear errors while the
real server keeps serving."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import PLAIN_CLIENT, apply_edit, inline_params, insert, open_document

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BODY = 'def greet(name: str) -> str:\n    """Return a greeting for name."""\n    '


@pytest_lsp.fixture(scope="module", loop_scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=PLAIN_CLIENT))
    yield
    await lsp_client.shutdown_session()


def completion_params(uri: str, line: int, character: int) -> types.CompletionParams:
    return types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
    )


async def test_completion_fallback_offers_one_labelled_ai_item(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/fallback.py"
    open_document(client, uri, BODY)
    result = await client.text_document_completion_async(completion_params(uri, 2, 4))
    assert isinstance(result, types.CompletionList) and result.is_incomplete
    assert len(result.items) == 1
    item = result.items[0]
    assert item.label.startswith("Ghostpilot AI: ")
    assert item.label_details is not None and "AI" in (item.label_details.description or "")
    assert item.sort_text == "\uffff"  # sorts after every other source's items
    assert item.text_edit is not None and item.text_edit.new_text.strip()
    edit = item.text_edit
    merged = apply_edit(
        BODY, (edit.range.start.line, edit.range.start.character),
        (edit.range.end.line, edit.range.end.character), edit.new_text,
    )
    assert merged.startswith(BODY[: BODY.rindex("\n") + 1]) and len(merged) > len(BODY)
    assert item.command is not None and item.command.command == "ghostpilot.accept"


async def test_unknown_uri_is_an_invalid_params_error(client: LanguageClient):
    with pytest.raises(JsonRpcInvalidParams, match="not open"):
        await client.text_document_inline_completion_async(inline_params("file:///nowhere.py", 0, 0))


@pytest.mark.parametrize(
    ("line", "character", "match"),
    [
        pytest.param(99, 0, "past the end of the document", id="line-past-end"),
        pytest.param(0, 500, "past the end of line 0", id="column-past-end"),
    ],
)
async def test_position_past_the_end_is_an_invalid_params_error(
    client: LanguageClient, line: int, character: int, match: str
):
    uri = "file:///tmp/ghostpilot-e2e/positions.py"
    open_document(client, uri, "x = 1\n")
    with pytest.raises(JsonRpcInvalidParams, match=match):
        await client.text_document_inline_completion_async(inline_params(uri, line, character))


async def test_five_megabyte_document_is_served(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/huge.py"
    block = "def f_{0}(x):\n    return x + {0}\n\n\n"
    text = "".join(block.format(i) for i in range(160_000))
    assert len(text.encode()) > 5_000_000
    text += BODY
    open_document(client, uri, text)
    last = text.count("\n")
    insert(client, uri, 2, last, 4, "r")
    started = time.perf_counter()
    result = await client.text_document_inline_completion_async(inline_params(uri, last, 5))
    assert result is not None
    # The server stays responsive afterwards.
    small = "file:///tmp/ghostpilot-e2e/after-huge.py"
    open_document(client, small, BODY)
    after = await client.text_document_inline_completion_async(inline_params(small, 2, 4))
    assert after is not None and len(after.items) == 1
    print(f"5 MB document: completion answered in {time.perf_counter() - started:.2f} s")


async def test_invalid_configuration_gives_one_message_and_defaults(client: LanguageClient):
    before = len(client.messages)
    for _ in range(2):
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"ghostpilot": {"maxTokens": "lots", "temperature": 7, "bogus": 1}}
            )
        )
    await asyncio.sleep(0.5)
    shown = [m.message for m in client.messages[before:]]
    assert len([m for m in shown if "maxTokens" in m]) == 1, shown
    assert len([m for m in shown if "temperature" in m]) == 1, shown
    assert len([m for m in shown if "bogus" in m]) == 1, shown
    uri = "file:///tmp/ghostpilot-e2e/after-config.py"
    open_document(client, uri, BODY)
    result = await client.text_document_completion_async(completion_params(uri, 2, 4))
    assert result is not None and len(result.items) == 1


@pytest_lsp.fixture(loop_scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def bad_model_client(lsp_client: LanguageClient, tmp_path_factory):
    fake = tmp_path_factory.mktemp("model") / "not-a-model.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip file, not a GGUF model" * 10)
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=PLAIN_CLIENT, initialization_options={"model": str(fake)})
    )
    yield
    await lsp_client.shutdown_session()


async def test_model_that_is_not_gguf_is_reported_and_server_keeps_serving(bad_model_client: LanguageClient):
    client = bad_model_client
    uri = "file:///tmp/ghostpilot-e2e/bad-model.py"
    open_document(client, uri, BODY)
    for _ in range(2):
        result = await client.text_document_completion_async(completion_params(uri, 2, 4))
        assert result is not None and len(result.items) == 0
    errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert len([m for m in errors if "not a GGUF model" in m]) == 1, errors
    # Switching to a good model at run time works without a restart.
    await switch_to_the_embedded_model(client, uri)


async def switch_to_the_embedded_model(client: LanguageClient, uri: str) -> None:
    """Set the model to the embedded one and wait until ``uri`` gets a suggestion."""
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ghostpilot": {"model": "gemma3-270m"}}))
    for _ in range(120):
        result = await client.text_document_completion_async(completion_params(uri, 2, 4))
        if result is not None and result.items:
            break
        await asyncio.sleep(0.5)
    assert result is not None and len(result.items) == 1


async def test_a_bad_model_setting_keeps_the_loaded_model(bad_model_client: LanguageClient, tmp_path):
    """Once a model is loaded, a typo in the model setting (or a file that is not a
    model) is reported and the loaded model keeps serving: it was closed before the new
    one was found missing, and suggestions stopped until the setting was fixed."""
    client = bad_model_client
    uri = "file:///tmp/ghostpilot-e2e/keep-model.py"
    open_document(client, uri, BODY)
    await switch_to_the_embedded_model(client, uri)
    fake = tmp_path / "zip.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model" * 10)
    for bad in ("gemma3-270m-typo", str(fake)):
        before = len(client.messages)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"ghostpilot": {"model": bad}}))
        for _ in range(40):
            shown = [m.message for m in client.messages[before:] if m.type == types.MessageType.Error]
            if shown:
                break
            await asyncio.sleep(0.25)
        assert any("still using gemma3-270m" in m for m in shown), shown
        result = await client.text_document_completion_async(completion_params(uri, 2, 4))
        assert result is not None and len(result.items) == 1, bad
