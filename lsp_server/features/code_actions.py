"""textDocument/codeAction: the actions every feature offers, gathered in one handler.

Features add providers with ``server.add_code_action_provider(kinds, provider)``; a
provider that fails is logged and reported once while the others' actions still show.
"""

from __future__ import annotations

import inspect
import logging

from lsprotocol import types

log = logging.getLogger(__name__)


def setup(server) -> None:  # type: ignore[no-untyped-def]
    if not server.code_action_providers:
        return

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=sorted(server.code_action_kinds), resolve_provider=False),
    )
    async def code_action(ls, params: types.CodeActionParams):  # type: ignore[no-untyped-def]
        actions: list[types.CodeAction | types.Command] = []
        for provider in ls.code_action_providers:
            try:
                found = provider(ls, params)
                if inspect.isawaitable(found):
                    found = await found
            except Exception as error:
                log.exception("code action provider failed")
                ls.report_error(f"code-actions:{type(error).__name__}", f"code actions failed: {error}")
                continue
            actions.extend(found or [])
        return actions or None
