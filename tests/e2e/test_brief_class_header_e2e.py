"""End-to-end, the real ``ghostpilot serve`` with the real embedded model: the first
request in a class not met before prompts with a brief class header (the class line,
its docstring's first line, the first members), so it evaluates a fraction of the
tokens; after a pause the whole header comes in, evaluated in the background, and the
next request evaluates only the new tokens (``ghostpilot/stats``)."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import INLINE_CLIENT, inline_params, insert, open_document, server_stats

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

MEMBERS = "".join(
    f"    def {verb}_{noun}(self, {noun}, *, timeout=None):\n"
    f'        """{verb.capitalize()} a {noun} on the server."""\n'
    f"        return self.call({verb!r}, {noun}, timeout)\n\n"
    for verb in ("get", "put", "delete", "rename", "copy")
    for noun in ("file", "folder", "link", "record", "account", "session")
)
SAMPLE = (
    "import socket\n\n\n"
    "class Client:\n"
    '    """A client for the storage server.\n\n'
    "    One connection, opened lazily and kept between calls.\n"
    '    """\n\n'
    + MEMBERS
    + "    def describe(self, path):\n"
    '        """A one-line description of the entry at ``path``."""\n'
    "        entry = self.get_record(path)\n"
    "        "
)
LINES = SAMPLE.split("\n")
END = (len(LINES) - 1, 8)


@pytest_lsp.fixture(scope="module", loop_scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient):
    result = await lsp_client.initialize_session(
        types.InitializeParams(capabilities=INLINE_CLIENT,
                               initialization_options={"timeBudgetMs": 4000, "maxTokens": 16}))
    lsp_client.initialize_result = result  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


async def test_a_new_class_is_brief_at_first_and_whole_after_a_pause(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/brief_class_header.py"
    open_document(client, uri, SAMPLE)
    await client.text_document_inline_completion_async(inline_params(uri, *END, invoked=False))
    first = (await server_stats(client)).lastRequest
    # The class line, the docstring's first line and a member or two: the whole header
    # (30 members) is several hundred tokens more.
    assert 40 < first.promptTokens < 200, first
    typed = "size = entry"
    insert(client, uri, 2, END[0], END[1], typed)
    await client.text_document_inline_completion_async(
        inline_params(uri, END[0], END[1] + len(typed), invoked=False))
    stats = await server_stats(client)
    asked = stats.lastRequest
    assert asked.outcome != "type-through cache", asked
    assert 0 < asked.evaluatedTokens <= 12, asked  # the same brief head: the new tokens only
    before = stats.definitionsRefreshed
    for _ in range(600):  # the user pauses: the whole header is brought in, in the background
        if (await server_stats(client)).definitionsRefreshed > before:
            break
        await asyncio.sleep(0.05)
    assert (await server_stats(client)).definitionsRefreshed == before + 1
    more = "\n        name = "
    insert(client, uri, 3, END[0], END[1] + len(typed), more)
    await client.text_document_inline_completion_async(
        inline_params(uri, END[0] + 1, len(more) - 1, invoked=False))
    after = (await server_stats(client)).lastRequest
    assert after.outcome != "type-through cache", after
    # The whole header is in the prompt now, and the pause evaluated it with describe()
    # up to the typed line: the request evaluates only the last lines.
    assert after.promptTokens >= first.promptTokens + 250, (first, after)
    assert 0 < after.evaluatedTokens <= 24, after
