"""Helpers for end-to-end tests that drive ``ghostpilot serve`` over stdio."""

from __future__ import annotations

from lsprotocol import types

INLINE_CLIENT = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities(),
        completion=types.CompletionClientCapabilities(),
        synchronization=types.TextDocumentSyncClientCapabilities(),
    ),
    window=types.WindowClientCapabilities(work_done_progress=True, show_message=None),
    workspace=types.WorkspaceClientCapabilities(configuration=True),
)

PLAIN_CLIENT = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        completion=types.CompletionClientCapabilities(),
        synchronization=types.TextDocumentSyncClientCapabilities(),
    ),
    workspace=types.WorkspaceClientCapabilities(configuration=True),
)


def open_document(client, uri: str, text: str, version: int = 1) -> None:  # type: ignore[no-untyped-def]
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)
        )
    )


def insert(client, uri: str, version: int, line: int, character: int, text: str) -> None:  # type: ignore[no-untyped-def]
    position = types.Position(line=line, character=character)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=position, end=position), text=text
                )
            ],
        )
    )


def inline_params(uri: str, line: int, character: int, invoked: bool = True) -> types.InlineCompletionParams:
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


def apply_edit(text: str, start: tuple[int, int], end: tuple[int, int], new_text: str) -> str:
    """Apply an LSP range edit (ASCII test documents) to ``text``."""
    lines = text.split("\n")

    def offset(position: tuple[int, int]) -> int:
        return sum(len(line) + 1 for line in lines[: position[0]]) + position[1]

    return text[: offset(start)] + new_text + text[offset(end) :]


async def server_stats(client):  # type: ignore[no-untyped-def]
    """``ghostpilot/stats`` (pygls answers it as a named tuple: fields as attributes)."""
    return await client.protocol.send_request_async("ghostpilot/stats", None)
