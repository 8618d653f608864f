"""Small helpers that handlers share: fetching a document and a cursor, LSP conversions."""

from __future__ import annotations

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.parsing.document import Document, UnknownDocument
from lsp_server.parsing.positions import PositionOutOfRange


def document_at(
    documents, uri: str, position: types.Position  # type: ignore[no-untyped-def]
) -> tuple[Document, int]:
    """The open document and the code-point offset of ``position``.

    Bad input (a URI that is not open, a position past the end) becomes a JSON-RPC
    InvalidParams error with a message that says what was wrong.
    """
    try:
        document: Document = documents.get(uri)
    except UnknownDocument as error:
        raise JsonRpcInvalidParams(str(error)) from None
    try:
        offset = document.offset_at(position.line, position.character, strict=True)
    except PositionOutOfRange as error:
        raise JsonRpcInvalidParams(f"{uri}: {error}") from None
    return document, offset


def to_range(document: Document, start: int, end: int) -> types.Range:
    start_line, start_char = document.position_at(start)
    end_line, end_char = document.position_at(end)
    return types.Range(
        start=types.Position(line=start_line, character=start_char),
        end=types.Position(line=end_line, character=end_char),
    )


async def suggestion_at(ls, uri: str, position: types.Position, *, explicit: bool):  # type: ignore[no-untyped-def]
    """The model's suggestion at a position, or None; shared by inline and fallback completion.

    Superseded requests and an unavailable model give None (the latter reported once).
    """
    from lsp_server.backends.base import Cancelled, ModelUnavailable
    from lsp_server.policy import may_complete

    document, offset = document_at(ls.documents, uri, position)
    verdict = may_complete(uri, document.language_id, ls.settings)
    if not verdict.allowed:
        return document, None
    ls.send_status("generating")
    try:
        suggestion = await ls.engine.complete(document, offset, explicit=explicit, key=uri)
    except Cancelled:
        ls.superseded_requests += 1
        return document, None
    except ModelUnavailable as error:
        ls.report_error(f"model:{error}", str(error))
        ls.send_status("error", message=str(error))
        return document, None
    if suggestion is None:
        ls.send_status("ready")
        return document, None
    ls.remember(suggestion)
    result = suggestion.result
    ls.send_status(
        "ready",
        latencyMs=round(suggestion.latency_s * 1000, 1),
        promptTokens=result.prompt_tokens if result else 0,
        reusedTokens=result.reused_tokens if result else 0,
        evaluatedTokens=result.evaluated_tokens if result else 0,
        generatedTokens=result.token_count if result else 0,
        cached=suggestion.reused_from_cache,
    )
    return document, suggestion


def accept_command(suggestion_id: str) -> types.Command:
    return types.Command(title="Accept Ghostpilot suggestion", command="ghostpilot.accept", arguments=[suggestion_id])
