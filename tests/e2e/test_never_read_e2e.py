"""End-to-end: documents named like secrets get no suggestion, whatever their URI scheme.

The real server with the real embedded model: the same Python text gets a suggestion
in an ordinary untitled buffer, and none in an untitled buffer, a ``vscode-vfs:``
document or a file ignored through ``.git/info/exclude``. The prompt is built from the
requested document only, so the model never running for them (``ghostpilot/stats``
still names the last ordinary suggestion) means none of their text reached a prompt.
"""

from __future__ import annotations

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import INLINE_CLIENT, inline_params, open_document

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SECRET = "sk-live-0123456789abcdef"
TEXT = f'''API_TOKEN = "{SECRET}"


def mean(values: list[float]) -> float:
    """Return the arithmetic mean of values."""
    '''


@pytest_lsp.fixture(scope="module", loop_scope="module",
                    config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient):
    lsp_client.set_configuration({"maxTokens": 24}, section="ghostpilot")
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=INLINE_CLIENT, initialization_options={"timeBudgetMs": 4000})
    )
    yield
    await lsp_client.shutdown_session()


async def _suggest(client: LanguageClient, uri: str) -> list[types.InlineCompletionItem]:
    open_document(client, uri, TEXT)
    result = await client.text_document_inline_completion_async(inline_params(uri, 5, 4))
    return [] if result is None else list(result.items if isinstance(result, types.InlineCompletionList) else result)


async def _last_id(client: LanguageClient) -> str | None:
    stats = await client.protocol.send_request_async("ghostpilot/stats", None)
    last = stats["last"] if isinstance(stats, dict) else getattr(stats, "last", None)
    if last is None:
        return None
    return last["id"] if isinstance(last, dict) else getattr(last, "id", None)


def _excluded_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = tmp_path_factory.mktemp("repo")
    (repo / ".git" / "info").mkdir(parents=True)
    (repo / ".git" / "info" / "exclude").write_text("scratch_*.py\n")
    return (repo / "scratch_keys.py").as_uri()


async def test_secret_named_documents_get_no_suggestion(
    client: LanguageClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    control = await _suggest(client, "untitled:Untitled-1")
    assert len(control) == 1, "the same text in an ordinary buffer must get a suggestion"
    before = await _last_id(client)
    assert before is not None
    for uri in ("untitled:.env", "vscode-vfs://github/owner/repo/.env",
                "untitled:/home/u/app/.env.production", _excluded_file(tmp_path_factory)):
        assert await _suggest(client, uri) == [], uri
        assert await _last_id(client) == before, f"the model ran for {uri}"
