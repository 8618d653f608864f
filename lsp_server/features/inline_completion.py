"""textDocument/inlineCompletion (LSP 3.18): ghost text from the local model.

Explicitly invoked (``triggerKind: Invoked``) in an empty or partial body of a function
with docstring examples or referencing tests, the items are tested candidates, best
first (``features/tested.py``). Otherwise each item carries a ``range`` (the cursor, or the line's indentation on a blank line)
and the command ``ghostpilot.accept`` that clients execute when the user accepts it.
"""

from __future__ import annotations

from lsprotocol import types

from lsp_server.features import tested
from lsp_server.features._common import (
    accept_command,
    releasing_frames,
    suggestion_at,
    to_range,
)

# At run time, not under TYPE_CHECKING: pygls resolves handlers' annotations
# (typing.get_type_hints). No cycle: server.py imports features only in create_server().
from lsp_server.server import GhostpilotServer


def setup(server: GhostpilotServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    @releasing_frames
    async def inline_completion(
        ls: GhostpilotServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        explicit = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        position = params.position
        if explicit:  # in a function body with examples or tests: tested candidates
            ranked, position = await tested.inline(ls, params.text_document.uri, position)
            if ranked is not None:
                return ranked
        document, suggestion = await suggestion_at(
            ls, params.text_document.uri, position, explicit=explicit
        )
        if suggestion is None:
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=suggestion.text,
            range=to_range(document, suggestion.start, suggestion.end),
            command=accept_command(suggestion.id),
        )
        return types.InlineCompletionList(items=[item])
