"""textDocument/didOpen, didChange, didClose: keep every open buffer and its
incrementally reparsed tree-sitter tree. Handlers are quick and never wait on the model.

The :class:`~lsp_server.parsing.document.DocumentStore` is the one copy of each buffer;
the handlers read the params as the client sent them (positions are clamped by the
store, by LSP's rules) and never change them. Whatever the store cannot keep as sent is
said once per document: lone surrogates stored as U+FFFD, a document above
``maxFileSizeKb`` (kept in sync, not parsed or completed), a change that could not be
applied (the document is then out of sync until the client sends its full text again).

``ghostpilot/document`` (request, params ``{"uri": ...}``) answers the server's copy of
an open document: ``uri``, ``version``, ``languageId``, ``text``, ``lineCount``,
``outOfSync`` (the reason, or null), ``oversized``. Tests and bug reports compare it
with the editor's buffer.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.config import Settings
from lsp_server.features._common import shown
from lsp_server.parsing.document import ChangeFailed, Document, RangeEdit, UnknownDocument

# At run time, not under TYPE_CHECKING: pygls resolves handlers' annotations
# (typing.get_type_hints). No cycle: server.py imports features only in create_server().
from lsp_server.server import GhostpilotServer

DOCUMENT_REQUEST = "ghostpilot/document"
# Closing a document at least this large hands the freed heap back to the system.
TRIM_AFTER_BYTES = 1 << 20


def _edit(change: types.TextDocumentContentChangeEvent) -> RangeEdit:
    if isinstance(change, types.TextDocumentContentChangePartial):
        r = change.range
        return RangeEdit(((r.start.line, r.start.character), (r.end.line, r.end.character)), change.text)
    return RangeEdit(None, change.text)


def max_bytes(settings: Settings) -> int:
    return int(settings.max_file_size_kb) * 1024


def notices(document: Document, *, was_oversized: bool, replaced_before: int) -> list[tuple[str, str]]:
    """(key, message) for what changed about ``document`` that the user must hear of."""
    found: list[tuple[str, str]] = []
    if document.oversized and not was_oversized:
        found.append((
            f"oversized:{document.uri}",
            f"{document.uri} is {len(document.source) / 1e6:.1f} MB, above maxFileSizeKb "
            f"({document.max_bytes // 1024} KB): Ghostpilot does not parse or complete it",
        ))  # fmt: skip
    if document.replaced_surrogates > replaced_before:
        found.append((
            f"surrogates:{document.uri}",
            f"{document.uri}: {document.replaced_surrogates} lone UTF-16 surrogate(s) in the "
            "text are kept as U+FFFD (same length, so positions stay right)",
        ))  # fmt: skip
    return found


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


def release_heap() -> None:
    """glibc keeps freed memory for reuse; a closed large file's text, bytes and tree
    would otherwise stay in the server's RSS."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def document_state(document: Document, out_of_sync: str | None) -> dict[str, Any]:
    return {
        "uri": document.uri,
        "version": document.version,
        "languageId": document.language_id,
        "text": document.text,
        "lineCount": document.line_count,
        "outOfSync": out_of_sync,
        "oversized": document.oversized,
    }


def _tell(ls: GhostpilotServer, found: list[tuple[str, str]]) -> None:
    for key, message in found:
        ls.report_error(key, message, types.MessageType.Warning)


def setup(server: GhostpilotServer) -> None:
    server.documents.add_close_listener(server.engine.forget)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: GhostpilotServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        ls.documents.max_bytes = max_bytes(ls.settings)
        document = ls.documents.open(item.uri, item.text, item.version, item.language_id)
        _tell(ls, notices(document, was_oversized=False, replaced_before=0))

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: GhostpilotServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        try:
            document = ls.documents.get(uri)
        except UnknownDocument as error:
            ls.report_error("didChange:unknown", f"didChange for a document that is not open: {error}",
                            types.MessageType.Warning)
            return
        was_oversized, replaced_before = document.oversized, document.replaced_surrogates
        ls.documents.max_bytes = max_bytes(ls.settings)
        try:
            ls.documents.change(uri, params.text_document.version, [_edit(c) for c in params.content_changes])
        except ChangeFailed as failure:
            ls.report_error(f"out-of-sync:{uri}", f"{failure}; close and reopen the file to resync")
        _tell(ls, notices(document, was_oversized=was_oversized, replaced_before=replaced_before))

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    async def did_save(ls: GhostpilotServer, params: types.DidSaveTextDocumentParams) -> None:
        await ls.call_listeners(ls.save_listeners, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: GhostpilotServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        large = uri in ls.documents and len(ls.documents.get(uri).source) >= TRIM_AFTER_BYTES
        ls.documents.close(uri)
        if large:
            release_heap()

    @server.feature(DOCUMENT_REQUEST)
    def document(ls: GhostpilotServer, params: Any) -> dict[str, Any]:
        uri = params.get("uri") if isinstance(params, dict) else getattr(params, "uri", None)
        if not isinstance(uri, str):
            raise JsonRpcInvalidParams(f"{DOCUMENT_REQUEST} expects {{\"uri\": string}}, got {shown(params)}")
        try:
            found = ls.documents.get(uri)
        except UnknownDocument as error:
            message = str(error)
        else:
            return document_state(found, ls.documents.out_of_sync(uri))
        raise JsonRpcInvalidParams(message)
