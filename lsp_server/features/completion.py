"""textDocument/completion: the fallback for clients without inline completion.

One clearly labelled AI item whose text edit inserts the suggestion. It sorts after
every other source's items and is offered only when the client lacks inline completion
(setting ``completionFallback``: auto | always | never).
"""

from __future__ import annotations

from lsprotocol import types

from lsp_server.engine import Suggestion
from lsp_server.features._common import (
    accept_command,
    releasing_frames,
    suggestion_at,
    to_range,
)
from lsp_server.parsing.document import Document

# At run time, not under TYPE_CHECKING: pygls resolves handlers' annotations
# (typing.get_type_hints). No cycle: server.py imports features only in create_server().
from lsp_server.server import GhostpilotServer

LABEL_PREFIX = "Ghostpilot AI: "


def wants_fallback(mode: str, client_capabilities: types.ClientCapabilities) -> bool:
    if mode == "never":
        return False
    if mode == "always":
        return True
    text_document = client_capabilities.text_document
    return not (text_document and text_document.inline_completion)


def _markdown_ok(client_capabilities: types.ClientCapabilities) -> bool:
    text_document = client_capabilities.text_document
    completion = text_document.completion if text_document else None
    item = completion.completion_item if completion else None
    formats = item.documentation_format if item else None
    return bool(formats and types.MarkupKind.Markdown in formats)


def item_for(document: Document, suggestion: Suggestion, markdown: bool = True) -> types.CompletionItem:
    first = next((line.strip() for line in suggestion.text.split("\n") if line.strip()), "")
    label = LABEL_PREFIX + (first if len(first) <= 60 else first[:57] + "...")
    return types.CompletionItem(
        label=label,
        label_details=types.CompletionItemLabelDetails(description="Ghostpilot (AI)"),
        kind=types.CompletionItemKind.Snippet,
        detail=f"AI suggestion from {suggestion.model}; review before use",
        documentation=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=f"```python\n{suggestion.text}\n```"
        )
        if markdown
        else suggestion.text,
        sort_text="\uffff",
        filter_text=suggestion.text,
        preselect=False,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(
            range=to_range(document, suggestion.start, suggestion.end), new_text=suggestion.text
        ),
        command=accept_command(suggestion.id),
    )


def setup(server: GhostpilotServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[]))
    @releasing_frames
    async def completion(ls: GhostpilotServer, params: types.CompletionParams) -> types.CompletionList:
        if not wants_fallback(ls.settings.completion_fallback, ls.client_capabilities):
            return types.CompletionList(is_incomplete=False, items=[])
        explicit = bool(
            params.context and params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        document, suggestion = await suggestion_at(
            ls, params.text_document.uri, params.position, explicit=explicit
        )
        if suggestion is None:
            return types.CompletionList(is_incomplete=True, items=[])
        return types.CompletionList(is_incomplete=True, items=[item_for(document, suggestion, _markdown_ok(ls.client_capabilities))])
