"""textDocument/codeAction: the actions every feature offers, gathered in one handler.

Features add providers with ``server.add_code_action_provider(kinds, provider)``; a
provider that fails is logged and reported once while the others' actions still show.
"""

from __future__ import annotations

from lsprotocol import types

# At run time, not under TYPE_CHECKING: pygls resolves handlers' annotations
# (typing.get_type_hints). No cycle: server.py imports features only in create_server().
from lsp_server.server import GhostpilotServer


def setup(server: GhostpilotServer) -> None:
    if not server.code_action_providers:
        return

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=sorted(server.code_action_kinds), resolve_provider=False),
    )
    async def code_action(
        ls: GhostpilotServer, params: types.CodeActionParams
    ) -> list[types.CodeAction | types.Command] | None:
        actions: list[types.CodeAction | types.Command] = []
        for found in await ls.call_listeners(ls.code_action_providers, ls, params, failure="code actions failed"):
            actions.extend(found or [])
        return actions or None
