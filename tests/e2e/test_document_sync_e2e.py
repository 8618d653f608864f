"""End-to-end: the real ``ghostpilot serve`` process with the real embedded model keeps
each buffer as the editor has it (issue 10, items 3, 5 and 8).

The client speaks like Neovim (``initializationOptions: []``). The server's copy is read
back with the ``ghostpilot/document`` request and compared with the reference model in
``tests/lsp_text_model.py``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests import lsp_text_model as model
from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import INLINE_CLIENT, inline_params, open_document

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SAMPLE = '''import math


def circle_area(radius: float) -> float:
    """Return the area of a circle with the given radius."""
    '''
MAX_FILE_SIZE_KB = 64


@pytest_lsp.fixture(scope="module", loop_scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient):
    # Neovim sends an empty Lua table as [] (initializationOptions, and the section's
    # value in workspace/configuration); the settings come later, with didChangeConfiguration.
    lsp_client.set_configuration([], section="ghostpilot")
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=INLINE_CLIENT, initialization_options=[])
    )
    states: asyncio.Queue[str] = asyncio.Queue()

    @lsp_client.feature("ghostpilot/status")
    def status(params: Any) -> None:
        states.put_nowait(params["state"] if isinstance(params, dict) else params.state)

    lsp_client.states = states  # type: ignore[attr-defined]
    lsp_client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"ghostpilot": {"maxTokens": 48, "timeBudgetMs": 4000, "maxFileSizeKb": MAX_FILE_SIZE_KB}}))  # fmt: skip
    yield
    await lsp_client.shutdown_session()


async def server_copy(client: LanguageClient, uri: str) -> Any:
    return await client.protocol.send_request_async("ghostpilot/document", {"uri": uri})


def send(client: LanguageClient, uri: str, version: int, changes: list[model.Change]) -> None:
    client.text_document_did_change(model.did_change_params(uri, version, changes))


def messages(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages] + [m.message for m in client.log_messages]


async def test_empty_settings_tables_are_no_settings(client: LanguageClient):
    # The configuration is pulled while the model loads: wait for the model, then for
    # every message before a request.
    for _ in range(600):
        reports = [r for rs in client.progress_reports.values() for r in rs]
        if any(isinstance(r, types.WorkDoneProgressEnd) for r in reports):
            break
        await asyncio.sleep(0.2)
    await client.protocol.send_request_async("ghostpilot/stats", None)
    assert not [m for m in messages(client) if "setting" in m], messages(client)


async def test_edit_storm_leaves_the_server_copy_equal_to_the_editors(client: LanguageClient):
    rng = random.Random(3)
    uri = "file:///tmp/ghostpilot-e2e/storm.py"
    expected = model.stored(model.random_text(rng, 12))
    open_document(client, uri, expected)
    version, sent, divergent = 1, 0, []
    while sent < 400:
        changes = []
        for _ in range(rng.choice((1, 1, 2, 3, 5))):
            change = model.random_change(rng, expected)
            changes.append(change)
            expected = model.apply(expected, change)
        version += 1
        sent += len(changes)
        send(client, uri, version, changes)
        if version % 20 == 0:
            state = await server_copy(client, uri)
            if state.text != expected:
                divergent.append(version)
    state = await server_copy(client, uri)
    assert state.text == expected
    assert state.version == version
    assert state.outOfSync is None
    assert divergent == []


async def test_lone_surrogates_keep_every_change(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/surrogates.py"
    open_document(client, uri, "s = '\ud83d'\n")
    send(client, uri, 2, [model.Change(((0, 5), (0, 5)), "\udc00x"), model.Change(((1, 0), (1, 0)), "t = 1\n")])
    state = await server_copy(client, uri)
    assert state.text == "s = '\ufffdx\ufffd'\nt = 1\n"
    assert state.version == 2
    assert any("U+FFFD" in m for m in messages(client))


async def test_buffer_without_language_id_gets_suggestions(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/no-filetype.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="", version=1, text=SAMPLE)))  # fmt: skip
    state = await server_copy(client, uri)
    assert state.languageId == "python"
    result = await client.text_document_inline_completion_async(inline_params(uri, 5, 4))
    assert result is not None and len(result.items) == 1


async def test_suggestion_range_follows_lines_inserted_during_generation(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/moving.py"
    open_document(client, uri, SAMPLE)
    first = await client.text_document_inline_completion_async(inline_params(uri, 5, 4))
    assert first is not None and len(first.items) == 1  # and the tree is parsed now
    # The change lands while the model generates the same suggestion again: it is sent
    # once the server said "generating" (the request has taken its snapshot by then).
    states: asyncio.Queue[str] = client.states  # type: ignore[attr-defined]
    while not states.empty():
        states.get_nowait()
    request = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(uri, 5, 4)))
    while await asyncio.wait_for(states.get(), 60) != "generating":
        pass
    send(client, uri, 2, [model.Change(((0, 0), (0, 0)), "# inserted\n" * 30)])
    result = await request
    assert result is not None and len(result.items) == 1
    item = result.items[0]
    assert item.insert_text == first.items[0].insert_text
    assert item.range is not None
    assert (item.range.end.line, item.range.end.character) == (35, 4)
    assert item.range.start.line == 35 and item.range.start.character in (0, 4)
    state = await server_copy(client, uri)
    assert state.text == "# inserted\n" * 30 + SAMPLE


async def test_oversized_document_is_kept_but_not_served(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/huge.py"
    body = "x = 1\n" * (MAX_FILE_SIZE_KB * 1024 // 6 + 10) + SAMPLE
    open_document(client, uri, body)
    last = body.count("\n")
    send(client, uri, 2, [model.Change(((0, 0), (0, 0)), "y = 2\n")])
    state = await server_copy(client, uri)
    assert state.oversized and state.text == "y = 2\n" + body
    result = await client.text_document_inline_completion_async(inline_params(uri, last + 1, 4))
    assert result is not None and len(result.items) == 0
    assert any("maxFileSizeKb" in m for m in messages(client))
