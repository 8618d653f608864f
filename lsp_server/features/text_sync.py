"""textDocument/didOpen, didChange, didClose: keep every open buffer and its
incrementally reparsed tree-sitter tree. Handlers are quick and never wait on the model."""

from __future__ import annotations

from lsprotocol import types

from lsp_server.parsing.document import RangeEdit, UnknownDocument


def _edit(change: types.TextDocumentContentChangeEvent) -> RangeEdit:
    if isinstance(change, types.TextDocumentContentChangePartial):
        r = change.range
        return RangeEdit(((r.start.line, r.start.character), (r.end.line, r.end.character)), change.text)
    return RangeEdit(None, change.text)


def setup(server) -> None:  # type: ignore[no-untyped-def]
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: types.DidOpenTextDocumentParams) -> None:  # type: ignore[no-untyped-def]
        item = params.text_document
        ls.documents.open(item.uri, item.text, item.version, item.language_id)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: types.DidChangeTextDocumentParams) -> None:  # type: ignore[no-untyped-def]
        uri = params.text_document.uri
        try:
            ls.documents.change(uri, params.text_document.version, map(_edit, params.content_changes))
        except UnknownDocument as error:
            ls.report_error(f"unknown:{uri}", f"didChange for a document that is not open: {error}",
                            types.MessageType.Warning)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    async def did_save(ls, params: types.DidSaveTextDocumentParams) -> None:  # type: ignore[no-untyped-def]
        await ls.call_listeners(ls.save_listeners, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: types.DidCloseTextDocumentParams) -> None:  # type: ignore[no-untyped-def]
        ls.documents.close(params.text_document.uri)
