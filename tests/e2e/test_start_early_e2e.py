"""End-to-end, the real ``ghostpilot serve`` with the real embedded model: an edit in
another function starts evaluating its prompt before the request comes, so the request
evaluates only the few tokens typed since (``ghostpilot/stats`` ``lastRequest``)."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import INLINE_CLIENT, inline_params, insert, open_document, server_stats

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FILLER = "".join(f"\n\ndef helper_{i}(value):\n    return value * {i}\n" for i in range(6))
SAMPLE = f'''import os


def first(x):
    """Return x plus one."""
    return x +
{FILLER}

def file_stem(path):
    """The file name of ``path`` without its folders and without its extension:
    ``file_stem("/tmp/report.final.csv")`` is ``"report.final"``."""
    name = os.path.basename(path)
    '''
LINES = SAMPLE.split("\n")
FIRST = (5, len(LINES[5]))  # after "return x +"
STEM = (len(LINES) - 1, 4)  # the blank line at the end of file_stem


@pytest_lsp.fixture(scope="module", loop_scope="module", config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient):
    result = await lsp_client.initialize_session(
        types.InitializeParams(capabilities=INLINE_CLIENT,
                               initialization_options={"timeBudgetMs": 4000, "maxTokens": 24}))
    lsp_client.initialize_result = result  # type: ignore[attr-defined]
    yield
    await lsp_client.shutdown_session()



async def test_an_edit_in_another_function_evaluates_its_prompt_before_the_request(client: LanguageClient):
    uri = "file:///tmp/ghostpilot-e2e/start_early.py"
    open_document(client, uri, SAMPLE)
    await client.text_document_inline_completion_async(inline_params(uri, *FIRST, invoked=False))
    here = await server_stats(client)
    assert here.lastRequest.promptTokens > 0
    before = here.startedEarly
    # The user moves to file_stem and types a word there; the request comes after it.
    insert(client, uri, 2, STEM[0], STEM[1], "r")
    for _ in range(200):
        if (await server_stats(client)).startedEarly > before:
            break
        await asyncio.sleep(0.05)
    assert (await server_stats(client)).startedEarly == before + 1
    await asyncio.sleep(1.0)  # the user is typing the rest of the word
    insert(client, uri, 3, STEM[0], STEM[1] + 1, "oot")
    await client.text_document_inline_completion_async(inline_params(uri, STEM[0], STEM[1] + 4, invoked=False))
    asked = (await server_stats(client)).lastRequest
    assert asked.promptTokens > 80, asked
    # Only the cursor's line is left to evaluate (its few tokens), not file_stem's
    # signature, docstring and first line (dozens of tokens).
    assert 0 < asked.evaluatedTokens <= 8, asked
    assert asked.reusedTokens >= asked.promptTokens - 8


def _code_action(client: LanguageClient, uri: str, start: tuple[int, int], end: tuple[int, int]):
    return client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(*start), end=types.Position(*end)),
        context=types.CodeActionContext(diagnostics=[])))


async def _started_early(client: LanguageClient, before: int, wait_s: float) -> int:
    for _ in range(int(wait_s / 0.05)):
        found = (await server_stats(client)).startedEarly
        if found > before:
            return found
        await asyncio.sleep(0.05)
    return (await server_stats(client)).startedEarly


async def test_the_cursor_arriving_in_another_function_starts_early(client: LanguageClient):
    """VS Code asks for code actions at each cursor move; in a document being edited,
    the cursor coming to rest in another function evaluates its prompt there, so the
    first word typed there evaluates only itself. A selection, or a document nobody
    edited, starts nothing."""
    uri = "file:///tmp/ghostpilot-e2e/start_early_cursor.py"
    open_document(client, uri, SAMPLE)
    before = (await server_stats(client)).startedEarly
    await _code_action(client, uri, STEM, STEM)  # opened, never edited: reading code
    assert await _started_early(client, before, 1.0) == before
    await client.text_document_inline_completion_async(inline_params(uri, *FIRST, invoked=False))
    insert(client, uri, 2, FIRST[0], FIRST[1], " 1")  # the user writes in first()
    await client.text_document_inline_completion_async(
        inline_params(uri, FIRST[0], FIRST[1] + 2, invoked=False))
    before = (await server_stats(client)).startedEarly
    await _code_action(client, uri, (STEM[0] - 1, 4), STEM)  # a selection in file_stem
    assert await _started_early(client, before, 1.0) == before
    await _code_action(client, uri, STEM, STEM)  # the cursor comes to rest there
    assert await _started_early(client, before, 10.0) == before + 1
    await asyncio.sleep(1.0)  # the prompt is evaluated while the user has not typed yet
    insert(client, uri, 3, STEM[0], STEM[1], "root")
    await client.text_document_inline_completion_async(inline_params(uri, STEM[0], STEM[1] + 4, invoked=False))
    asked = (await server_stats(client)).lastRequest
    assert asked.promptTokens > 80, asked
    assert 0 < asked.evaluatedTokens <= 8, asked
