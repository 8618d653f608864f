"""Small helpers that handlers share: fetching a document and a cursor, command
arguments, LSP range conversions, the suggestion at a position."""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.parsing.document import Document, DocumentStore, UnknownDocument, follow_range
from lsp_server.parsing.positions import PositionOutOfRange

if TYPE_CHECKING:
    from lsp_server.engine import Suggestion
    from lsp_server.server import GhostpilotServer

log = logging.getLogger(__name__)
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def document_at(documents: DocumentStore, uri: str, position: types.Position) -> tuple[Document, int]:
    """The open document and the code-point offset of ``position``.

    Bad input (a URI that is not open, a position past the end) becomes a JSON-RPC
    InvalidParams error with a message that says what was wrong. The error is raised
    with no document in its frames or context, so an error answer keeps none alive.
    """
    try:
        document: Document = documents.get(uri)
    except UnknownDocument as error:
        problem = str(error)
    else:
        try:
            return document, document.offset_at(position.line, position.character, strict=True)
        except PositionOutOfRange as error:
            problem = f"{uri}: {error}"
        del document
    raise JsonRpcInvalidParams(problem)


def _clear_frames(error: BaseException) -> None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def releasing_frames(handler: Handler) -> Handler:
    """Wrap an async request handler so that its error answers keep nothing alive.

    pygls runs the handler in an asyncio task, and a task that failed refers to its
    exception, whose traceback refers to the task again: a cycle that only the cyclic
    collector frees, holding every frame's locals (documents, snapshots with their
    trees) until it runs. The frames below this wrapper are cleared before the error
    goes on to pygls, which still answers with it.
    """

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except Exception as error:
            _clear_frames(error)
            raise

    return wrapper  # type: ignore[return-value]


def command_arguments(args: Sequence[Any]) -> list[Any]:
    """A command's arguments, whether the client sent them spread out (``[uri, name]``,
    as pygls passes them to ``*args``) or as one list (``[[uri, name]]``)."""
    return list(args[0]) if len(args) == 1 and isinstance(args[0], list) else list(args)


# LSP's uinteger: lines and characters are at most this.
UINTEGER_MAX = 2**31 - 1
SHOWN_CHARS = 200  # of a client's value quoted back in an error message


def shown(value: Any) -> str:
    """``repr(value)`` for an error message, cut to SHOWN_CHARS: a client's argument can be
    megabytes long."""
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}… ({len(text):,} characters)"


def command_position(command: str, value: Any) -> types.Position:
    """A command's position argument, ``{"line", "character"}`` or ``[line, character]``,
    as LSP bounds it (integers from 0 to 2**31 - 1); JsonRpcInvalidParams otherwise."""
    if isinstance(value, types.Position):
        return value
    if isinstance(value, dict) and {"line", "character"} <= value.keys():
        line, character = value["line"], value["character"]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        line, character = value
    else:
        raise JsonRpcInvalidParams(f"{command}: position must be {{line, character}}, got {shown(value)}")
    for name, number in (("line", line), ("character", character)):
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= UINTEGER_MAX:
            raise JsonRpcInvalidParams(
                f"{command}: the position's {name} must be an integer from 0 to {UINTEGER_MAX}, got {shown(number)}"
            )
    return types.Position(line=line, character=character)


def optional_string(arguments: Sequence[Any], index: int) -> str | None:
    value = arguments[index] if len(arguments) > index else None
    return value if isinstance(value, str) else None


def to_range(document: Document, start: int, end: int) -> types.Range:
    """Code-point offsets in ``document`` -> an LSP range (the document's encoding)."""
    start_line, start_char = document.position_at(start)
    end_line, end_char = document.position_at(end)
    return types.Range(
        start=types.Position(line=start_line, character=start_char),
        end=types.Position(line=end_line, character=end_char),
    )


def range_offsets(document: Document, lsp_range: types.Range) -> tuple[int, int]:
    """An LSP range -> code-point offsets in ``document``, clamped as LSP says (a column
    past its line's end is the line's end)."""
    start, end = lsp_range.start, lsp_range.end
    return (
        document.offset_at(start.line, start.character, strict=False),
        document.offset_at(end.line, end.character, strict=False),
    )


def follow_edits(
    documents: DocumentStore,
    document: Document,
    revision: int,
    line_start: int,
    suggestion: Suggestion,
) -> Suggestion | None:
    """``suggestion`` (computed on ``document`` at ``revision``, on the line that starts
    at ``line_start``) against the document's current text: its range mapped through
    the edits that landed while it was being generated.

    None when an edit touched the cursor's line up to the cursor (the suggestion was
    made for that text), or the document was closed, reopened or lost its sync
    meanwhile: a stale answer is dropped, never misplaced."""
    uri = document.uri
    try:
        if documents.get(uri) is not document or documents.out_of_sync(uri):
            return None
    except UnknownDocument:
        return None
    if document.revision == revision:
        return suggestion
    changes = document.changes_since(revision)
    guard = min(line_start, suggestion.start)
    mapped = None if changes is None else follow_range(guard, suggestion.end, changes)
    if mapped is None:
        log.debug("dropped a suggestion for %s: the text at its range changed", uri)
        return None
    shift = mapped[0] - guard
    return replace(
        suggestion, start=suggestion.start + shift, end=mapped[1], version=document.version
    )


async def parse_off_the_loop(document: Document, *, whole: bool = True) -> None:
    """Bring the document's tree up to date on a thread (tree-sitter lets go of the GIL
    while it parses), so the edits that arrive meanwhile are not held up: a large file's
    reparse takes most of a second. With ``whole=False`` (a completion, which reads
    :meth:`Document.request_tree`) nothing is parsed where the edits lie in a few
    top-level statements: the request parses only those, in a millisecond or two (on a
    thread the first time they are most of the file: one large class)."""
    if not whole:
        if document.region() is not None:
            return
        region_job = document.region_job()
        if region_job is not None:
            revision, parse_region = region_job
            found = await asyncio.to_thread(parse_region)
            if found is not None:
                document.adopt_region(found, revision)
                if document.region() is not None:
                    return
    job = document.parse_job()
    if job is None:
        return
    revision, parse = job
    tree = await asyncio.to_thread(parse)
    document.adopt_tree(tree, revision)


# Whole parses started after a request (see parse_whole_later), by document: held until
# done (the loop keeps only weak references to tasks), one at a time for each.
_whole_parses: dict[int, asyncio.Task[None]] = {}


def parse_whole_later(document: Document) -> None:
    """After a request whose region spans several top-level statements (the user moved
    on from one function to another, and no code action asked for the whole tree since,
    as VS Code's do at each cursor move), parse the whole file on a thread: the next
    requests' regions then hold only the statement being edited, a method's class only
    up to the method. The answer does not wait for it; one at a time per document."""
    key = id(document)
    if key in _whole_parses or not document.wants_whole_parse():
        return

    async def run() -> None:
        try:
            await parse_off_the_loop(document, whole=True)
        except Exception:  # a background parse must never cost anything else
            log.exception("could not parse %s in the background", document.uri)

    task = asyncio.ensure_future(run())
    _whole_parses[key] = task
    task.add_done_callback(lambda _: _whole_parses.pop(key, None))


async def parsed_cursor(
    documents: DocumentStore, document: Document, offset: int, *, whole: bool = True
) -> tuple[int, int, int] | None:
    """Parse the document off the loop (see :func:`parse_off_the_loop` for ``whole``),
    then (revision, start of the cursor's line, cursor) in its current text: edits that
    landed meanwhile move the cursor; None when they touched its line up to the cursor,
    or the document was closed or reopened."""
    revision = document.revision
    line_start = int(document.index.char_starts[document.index.line_of_offset(offset)])
    await parse_off_the_loop(document, whole=whole)
    if document.revision == revision:
        return revision, line_start, offset
    changes = document.changes_since(revision)
    moved = None if changes is None else follow_range(line_start, offset, changes)
    if moved is None or document.uri not in documents or documents.get(document.uri) is not document:
        return None
    return document.revision, moved[0], moved[1]


async def suggestion_at(
    ls: GhostpilotServer, uri: str, position: types.Position, *, explicit: bool
) -> tuple[Document, Suggestion | None]:
    """The model's suggestion at a position, or None; shared by inline and fallback completion.

    Superseded requests and an unavailable model give None (the latter reported once), and
    so do documents above ``maxFileSizeKb`` or out of sync with the client (both reported
    when they became so). The suggestion's range is in the document's current text.
    """
    from lsp_server.backends.base import Cancelled, ModelUnavailable
    from lsp_server.policy import may_complete_recent

    document, offset = document_at(ls.documents, uri, position)
    if document.oversized or ls.documents.out_of_sync(uri):
        log.debug("no completion for %s: too large or out of sync", uri)
        return document, None
    # As typed: the verdict of the last RECENT_VERDICT_S (walking up the directories for
    # ignore files took a tenth of a millisecond a request, before the model started).
    verdict = may_complete_recent(uri, document.language_id, ls.settings)
    if not verdict.allowed:
        return document, None
    ls.send_status("generating")
    cursor = await parsed_cursor(ls.documents, document, offset, whole=False)
    if cursor is None:
        ls.send_status("ready", after_answer=True)
        return document, None
    revision, line_start, offset = cursor
    try:
        suggestion = await ls.engine.complete(document, offset, explicit=explicit, key=uri)
    except Cancelled:
        ls.superseded_requests += 1
        return document, None
    except ModelUnavailable as error:
        ls.report_error(f"model:{error}", str(error))
        ls.send_status("error", message=str(error))
        return document, None
    parse_whole_later(document)
    if suggestion is not None:
        suggestion = follow_edits(ls.documents, document, revision, line_start, suggestion)
    if suggestion is None:
        ls.send_status("ready", after_answer=True)
        return document, None
    ls.remember(suggestion)
    result = suggestion.result
    ls.send_status(
        "ready",
        after_answer=True,
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
