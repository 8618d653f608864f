"""End-to-end: the real ``ghostpilot serve`` process with the real embedded model."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.backends.threads import levels_for
from lsp_server.config import Settings, default_threads
from lsp_server.parsing.syntax import error_count, parse_text
from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import (
    INLINE_CLIENT,
    apply_edit,
    inline_params,
    insert,
    open_document,
    server_stats,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SAMPLE = '''import math


def circle_area(radius: float) -> float:
    """Return the area of a circle with the given radius."""
    '''


@pytest_lsp.fixture(scope="module", loop_scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient):
    lsp_client.set_configuration({"maxTokens": 48}, section="ghostpilot")
    result = await lsp_client.initialize_session(
        types.InitializeParams(capabilities=INLINE_CLIENT, initialization_options={"timeBudgetMs": 4000})
    )
    lsp_client.initialize_result = result  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


async def test_initialize_advertises_inline_completion_and_accept_command(client: LanguageClient):
    capabilities = client.initialize_result.capabilities  # type: ignore[attr-defined]
    assert capabilities.inline_completion_provider is not None
    assert capabilities.text_document_sync is not None
    assert capabilities.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert "ghostpilot.accept" in capabilities.execute_command_provider.commands


async def test_inline_completion_gives_parseable_suggestion_at_cursor(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/area.py"
    open_document(client, uri, SAMPLE)
    result = await client.text_document_inline_completion_async(inline_params(uri, 5, 4))
    assert result is not None and len(result.items) == 1
    item = result.items[0]
    text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    assert text.strip(), "empty suggestion"
    # On a blank line the item replaces the line's indentation: range = (5,0)-(5,4).
    assert item.range is not None
    assert (item.range.end.line, item.range.end.character) == (5, 4)
    assert item.range.start.line == 5 and item.range.start.character in (0, 4)
    merged = apply_edit(
        SAMPLE,
        (item.range.start.line, item.range.start.character),
        (item.range.end.line, item.range.end.character),
        text,
    )
    assert error_count(parse_text(merged).root_node) == 0, merged
    assert item.command is not None and item.command.command == "ghostpilot.accept"
    accepted = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="ghostpilot.accept", arguments=item.command.arguments)
    )
    assert accepted == {"accepted": item.command.arguments[0]}


async def test_progress_reported_while_model_loads(client: LanguageClient):
    ends = [
        report
        for reports in client.progress_reports.values()
        for report in reports
        if isinstance(report, types.WorkDoneProgressEnd)
    ]
    assert ends and "ready" in (ends[0].message or "")


async def test_newer_request_supersedes_older(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/supersede.py"
    text = "def fibonacci(n):\n    "
    open_document(client, uri, text)
    first = asyncio.ensure_future(client.text_document_inline_completion_async(inline_params(uri, 1, 4)))
    await asyncio.sleep(0.05)
    insert(client, uri, 2, 1, 4, "if")
    second = await client.text_document_inline_completion_async(inline_params(uri, 1, 6))
    older = await first
    # The older request was stopped between tokens and answered with no items.
    assert older is not None and len(older.items) == 0
    assert second is not None and len(second.items) == 1
    stats = await client.protocol.send_request_async("ghostpilot/stats", None)
    assert stats.supersededRequests >= 1
    assert stats.last.promptTokens > 0
    # The thread governor (backends/threads.py) on a machine of more than one core.
    if default_threads() > 1:
        assert stats.threads.configured == default_threads()
        assert stats.threads.inUse in levels_for(default_threads())


async def test_one_character_edit_reevaluates_few_tokens(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/cache.py"
    text = SAMPLE.replace("    '''", "") + "    return math.pi * radius"
    open_document(client, uri, text)
    last_line = text.count("\n")
    column = len(text.rsplit("\n", 1)[1])
    await client.text_document_inline_completion_async(inline_params(uri, last_line, column))
    insert(client, uri, 2, last_line, column, "_")
    await client.text_document_inline_completion_async(inline_params(uri, last_line, column + 1))
    stats = await client.protocol.send_request_async("ghostpilot/stats", None)
    last = stats.last
    assert not last.cached
    assert last.promptTokens > 20
    assert last.reusedTokens >= last.promptTokens - 4, last


# The embedded model goes on with the calls it is shown: a loop inside the line, which no
# line end stops (the typing replays found such lines running to the line limit).
LOOPING = "class Widget:\n    def size(self):\n        return self.get(self.get(self.get(self.get(self.get("


async def test_a_line_that_loops_stops_early_and_is_not_shown(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/looping.py"
    open_document(client, uri, LOOPING)
    lines = LOOPING.split("\n")
    result = await client.text_document_inline_completion_async(
        inline_params(uri, len(lines) - 1, len(lines[-1]), invoked=False))
    assert result is not None and not result.items
    asked = (await server_stats(client)).lastRequest
    assert asked.outcome == "dropped: the model repeated itself"
    assert 0 < asked.generatedTokens < Settings().max_line_tokens
