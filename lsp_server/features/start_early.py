"""Start early: when an edit lands away from where the model last worked (another
function, another file), the prompt there is evaluated in the background before the
request comes, while the user types the rest of the word (issue 14's item 4).

The request then evaluates only what the user typed since. A request that comes while
it runs stops it between slices of 64 tokens and keeps what was evaluated.
``startEarly: false`` turns it off.
"""

from __future__ import annotations

import asyncio
import logging

from lsp_server.features._common import parsed_cursor
from lsp_server.parsing.document import Document, TextChange
from lsp_server.policy import may_complete
from lsp_server.server import GhostpilotServer

log = logging.getLogger(__name__)


def setup(server: GhostpilotServer) -> None:
    tasks: set[asyncio.Task[None]] = set()  # held until done (the loop keeps weak refs)

    def edited(document: Document, changes: list[TextChange]) -> None:
        if not changes or not wanted(server, document):
            return
        last = changes[-1]
        cursor = last.start + len(last.new_text)
        if not server.engine.moved_to(document.uri, document.index.line_of_offset(cursor)):
            return
        task = asyncio.ensure_future(start(server, document, cursor))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server.documents.add_listener(edited)


def wanted(ls: GhostpilotServer, document: Document) -> bool:
    settings = ls.settings
    return (
        settings.start_early
        and settings.backend == "local"
        and document.parsed
        and ls.worker.state == "ready"
        and ls.documents.out_of_sync(document.uri) is None
        and may_complete(document.uri, document.language_id, settings).allowed
    )


async def start(ls: GhostpilotServer, document: Document, cursor: int) -> None:
    try:
        found = await parsed_cursor(ls.documents, document, cursor, whole=False)
        if found is None:
            return
        ls.engine.start_early(document, found[2])
    except Exception:  # starting early must never cost an edit
        log.exception("could not start evaluating a prompt early")
