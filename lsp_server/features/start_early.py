"""Start early: when an edit lands away from where the model last worked (another
function, another file), the prompt there is evaluated in the background before the
request comes, while the user types the rest of the word (issue 14's item 4).

The request then evaluates only what the user typed since. A request that comes while
it runs stops it between slices of 64 tokens and keeps what was evaluated.
``startEarly: false`` turns it off.

The cursor's arrival starts it too, where the editor tells the server of it: VS Code asks
for code actions at each cursor move (the light bulb), with the cursor as an empty
range. Only in a document edited in the last :data:`EDITING_S` seconds, so that reading
code (moving around a file nobody is writing) costs no model time; the first keystroke
there then finds the prompt evaluated or under way.
"""

from __future__ import annotations

import asyncio
import logging
import time

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from lsp_server.features._common import document_at, parsed_cursor
from lsp_server.parsing.document import Document, TextChange
from lsp_server.policy import may_complete_recent
from lsp_server.server import GhostpilotServer

log = logging.getLogger(__name__)

# A document edited this recently is being written: the cursor's arrival in another of
# its functions starts early, once it has rested there this long (not at every line
# that a held arrow key passes).
EDITING_S = 120.0
CURSOR_REST_S = 0.15


def setup(server: GhostpilotServer) -> None:
    tasks: set[asyncio.Task[None]] = set()  # held until done (the loop keeps weak refs)
    edited_at: dict[str, float] = {}
    resting: list[asyncio.TimerHandle] = []  # the cursor's last arrival, until it has rested

    def launch(document: Document, cursor: int) -> None:
        if not server.engine.moved_to(document.uri, document.index.line_of_offset(cursor)):
            return
        task = asyncio.ensure_future(start(server, document, cursor))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def edited(document: Document, changes: list[TextChange]) -> None:
        if not changes:
            return
        edited_at[document.uri] = time.monotonic()
        if wanted(server, document):
            last = changes[-1]
            launch(document, last.start + len(last.new_text))

    def cursor_moved(ls: GhostpilotServer, params: types.CodeActionParams) -> None:
        """A code action request for an empty range: where the cursor rests."""
        start, end = params.range.start, params.range.end
        uri = params.text_document.uri
        if (start.line, start.character) != (end.line, end.character):
            return  # a selection, not a cursor
        if time.monotonic() - edited_at.get(uri, float("-inf")) > EDITING_S:
            return
        try:
            document, offset = document_at(ls.documents, uri, start)
        except JsonRpcException:
            return  # a stale position: code actions are asked for constantly
        for handle in resting:
            handle.cancel()
        resting.clear()
        revision = document.revision

        def rested() -> None:
            resting.clear()
            # An edit since then started early from where it landed, if anywhere.
            current = document.uri in ls.documents and ls.documents.get(document.uri) is document
            if current and document.revision == revision and wanted(ls, document):
                launch(document, offset)

        resting.append(asyncio.get_running_loop().call_later(CURSOR_REST_S, rested))

    def closed(uri: str) -> None:
        edited_at.pop(uri, None)

    server.documents.add_listener(edited)
    server.documents.add_close_listener(closed)
    server.add_code_action_provider([], cursor_moved)


def wanted(ls: GhostpilotServer, document: Document) -> bool:
    settings = ls.settings
    return (
        settings.start_early
        and settings.backend == "local"
        and document.parsed
        and ls.worker.state == "ready"
        and ls.documents.out_of_sync(document.uri) is None
        and may_complete_recent(document.uri, document.language_id, settings).allowed
    )


async def start(ls: GhostpilotServer, document: Document, cursor: int) -> None:
    try:
        found = await parsed_cursor(ls.documents, document, cursor, whole=False)
        if found is None:
            return
        ls.engine.start_early(document, found[2])
    except Exception:  # starting early must never cost an edit
        log.exception("could not start evaluating a prompt early")
