"""End-to-end, the real ``ghostpilot serve`` with the real embedded model: typing a word
that names another top-level definition keeps the function's prompt (its used
definitions are held), so the request evaluates only the new tokens; after a pause the
definition comes in (evaluated in the background), and the next request evaluates only
the new tokens again (``ghostpilot/stats``). The class header likewise: the first request
in a class not met before has a brief one (the class line, its docstring's first line,
the first members), so it evaluates a fraction of the tokens, and the whole header comes
in at the pause."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import INLINE_CLIENT, inline_params, insert, open_document, server_stats

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SAMPLE = '''import os


def zq_joiner(parts, separator="/"):
    """Join ``parts`` with ``separator``, skipping empty ones."""
    return separator.join(part for part in parts if part)


def describe(path):
    """A one-line description of the file at ``path``: its name and its size."""
    name = os.path.basename(path)
    size = os.path.getsize(path)
    '''
LINES = SAMPLE.split("\n")
END = (len(LINES) - 1, 4)  # the blank line at the end of describe


@pytest_lsp.fixture(scope="module", loop_scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient):
    result = await lsp_client.initialize_session(
        types.InitializeParams(capabilities=INLINE_CLIENT,
                               initialization_options={"timeBudgetMs": 4000, "maxTokens": 16}))
    lsp_client.initialize_result = result  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()


async def paused(client: LanguageClient, before: int) -> int:
    """The user pauses until the server has refreshed a prompt in the background (at most
    30 s); the refresh count then."""
    for _ in range(600):
        count = (await server_stats(client)).definitionsRefreshed
        if count > before:
            return count
        await asyncio.sleep(0.05)
    return (await server_stats(client)).definitionsRefreshed


async def ask(client: LanguageClient, uri: str, line: int, character: int):
    """An automatic inline completion request at (line, character); the server's stats
    after it (``lastRequest`` is this request's)."""
    await client.text_document_inline_completion_async(inline_params(uri, line, character, invoked=False))
    return await server_stats(client)


async def test_a_newly_named_definition_costs_no_reevaluation(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/held_definitions.py"
    open_document(client, uri, SAMPLE)
    first = (await ask(client, uri, *END)).lastRequest
    assert first.promptTokens > 40, first
    # The user types a line that names zq_joiner and asks at once.
    typed = "x = 1 + zq_joiner"
    insert(client, uri, 2, END[0], END[1], typed)
    named = await ask(client, uri, END[0], END[1] + len(typed))
    asked = named.lastRequest
    assert asked.outcome != "type-through cache", asked
    # Held: the prompt above describe() did not change, so only the new line's tokens were
    # evaluated (without holding, zq_joiner's signature came in above describe() and the
    # whole function was evaluated again: ~50 tokens).
    assert 0 < asked.evaluatedTokens <= 12, asked
    before = named.definitionsRefreshed
    # The user pauses: zq_joiner is brought in, in the background.
    assert await paused(client, before) == before + 1
    more = "\n    y = 7 - "  # a new line: no suggestion on screen starts with it
    insert(client, uri, 3, END[0], END[1] + len(typed), more)
    after = (await ask(client, uri, END[0] + 1, len(more) - 1)).lastRequest
    assert after.outcome != "type-through cache", after
    # zq_joiner's signature is in the prompt now (more tokens than the new line), and the
    # pause evaluated it with describe() up to the x line: the request evaluates only
    # the x and y lines (~15 tokens; without the pause's work, ~60).
    assert after.promptTokens >= asked.promptTokens + 20, (asked, after)
    assert 0 < after.evaluatedTokens <= 24, after


MEMBERS = "".join(
    f"    def {verb}_{noun}(self, {noun}, *, timeout=None):\n"
    f'        """{verb.capitalize()} a {noun} on the server."""\n'
    f"        return self.call({verb!r}, {noun}, timeout)\n\n"
    for verb in ("get", "put", "delete", "rename", "copy")
    for noun in ("file", "folder", "link", "record", "account", "session")
)
CLASS_SAMPLE = (
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
CLASS_END = (len(CLASS_SAMPLE.split("\n")) - 1, 8)


async def test_a_new_class_is_brief_at_first_and_whole_after_a_pause(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/brief_class_header.py"
    open_document(client, uri, CLASS_SAMPLE)
    first = (await ask(client, uri, *CLASS_END)).lastRequest
    # The class line, the docstring's first line and a member or two: the whole header
    # (30 members) is several hundred tokens more.
    assert 40 < first.promptTokens < 200, first
    typed = "size = entry"
    insert(client, uri, 2, CLASS_END[0], CLASS_END[1], typed)
    stats = await ask(client, uri, CLASS_END[0], CLASS_END[1] + len(typed))
    asked = stats.lastRequest
    assert asked.outcome != "type-through cache", asked
    assert 0 < asked.evaluatedTokens <= 12, asked  # the same brief head: the new tokens only
    before = stats.definitionsRefreshed
    # The user pauses: the whole header is brought in, in the background.
    assert await paused(client, before) == before + 1
    more = "\n        name = "
    insert(client, uri, 3, CLASS_END[0], CLASS_END[1] + len(typed), more)
    after = (await ask(client, uri, CLASS_END[0] + 1, len(more) - 1)).lastRequest
    assert after.outcome != "type-through cache", after
    # The whole header is in the prompt now, and the pause evaluated it with describe()
    # up to the typed line: the request evaluates only the last lines.
    assert after.promptTokens >= first.promptTokens + 250, (first, after)
    assert 0 < after.evaluatedTokens <= 24, after
