"""Tested suggestions in the editor: k candidate bodies for the function at the cursor,
each run in the sandbox against its docstring's examples and the workspace tests that
reference it, ranked (the logic is ``lsp_server/tested/``; this module is its LSP edge).

Three ways in:
- the code action "Suggest tested implementation" (command ``ghostpilot.suggestTested``,
  args uri, position) on a function with examples or referencing tests: it draws and
  tests, reports ``$/progress`` ("testing 8 candidates: 3 pass", cancellable), says the
  outcome in a message and answers the ranked candidates; afterwards the code actions
  there offer "Insert candidate 1: passes 3/3 examples" (Neovim, Emacs);
- explicitly invoked inline completion (``triggerKind: Invoked``) in an empty or partial
  body of such a function: the items are the ranked candidates, best first, each
  command's title and arguments carrying its pass counts (the VS Code extension shows
  "candidate 1/5 · passes 3/3 examples, 2/2 tests" for the item on screen);
- the VS Code command, which moves to the body and invokes inline completion.

A newer request for the same document (a completion as the user types on, or another
tested request), ``$/cancelRequest`` or the progress bar's cancel stops the sampling
(between tokens); the last two, and another tested request, stop the sandboxed runs too.
What was drawn for an older version of the document is not offered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.backends.base import Cancelled, ModelUnavailable
from lsp_server.engine import Overrides, Suggestion
from lsp_server.features._common import (
    command_arguments,
    command_position,
    document_at,
    parsed_cursor,
    shown,
    to_range,
)
from lsp_server.parsing.document import Document
from lsp_server.policy import may_complete

# At run time, not under TYPE_CHECKING: pygls resolves handlers' annotations
# (typing.get_type_hints). No cycle: server.py imports features only in create_server().
from lsp_server.server import GhostpilotServer, Progress
from lsp_server.tested import (
    Candidate,
    Checks,
    Target,
    TestedOutcome,
    candidate_title,
    checks_for,
    function_at,
)
from lsp_server.tested.pipeline import Tester

log = logging.getLogger(__name__)

COMMAND = "ghostpilot.suggestTested"
ACTION_TITLE = "Suggest tested implementation"
# Its own kind, so a client asking for "refactor.rewrite" (docstrings) gets no extra menu.
KIND = f"{types.CodeActionKind.Refactor.value}.tested"
ATTRIBUTE = "tested"  # where the server keeps its TestedSuggestions


@dataclass
class Offer:
    """The ranked candidates of the last tested request for a document."""

    uri: str
    version: int
    target: Target
    outcome: TestedOutcome
    suggestions: list[Suggestion]  # ranked, ranges in the document at ``version``

    def titles(self) -> list[str]:
        count = len(self.suggestions)
        return [candidate_title(i + 1, count, c) for i, c in enumerate(self.outcome.candidates)]


def insert_title(position: int, candidate: Candidate) -> str:
    """"Insert candidate 1: passes 3/3 examples" (the code action's title)."""
    label = candidate.evidence.label() if candidate.evidence else "not tested"
    return f"Insert candidate {position}: {label}"


def body_range(text: str, target: Target, cursor: int, *, at_cursor: bool) -> tuple[int, int]:
    """Where candidates are drawn and what they replace: at the cursor in a partial body
    (inline completion), else the whole body after the docstring."""
    if at_cursor and cursor >= target.body_start:
        return cursor, cursor
    end = max(target.body_start, target.end)
    if not text[target.body_start:end].strip():
        return target.body_start, target.body_start
    return target.body_start, end


class _Run:
    """One running tested request: its sandbox cancel event and its drawing task."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.drawing: asyncio.Future[list[Suggestion]] | None = None

    def cancel(self) -> None:
        self.event.set()
        if self.drawing is not None and not self.drawing.done():
            self.drawing.cancel()  # the worker's job stops between tokens


class TestedSuggestions:
    """The server's tested-suggestion state: running requests and last offers, by URI."""

    __test__ = False  # not a pytest class

    def __init__(self, server: GhostpilotServer) -> None:
        self.server = server
        self.offers: dict[str, Offer] = {}
        self._running: dict[str, _Run] = {}

    # -- what checks a function ----------------------------------------------------------

    def checks(self, uri: str, target: Target) -> Checks:
        reliance = getattr(self.server, "reliance", None)
        session = getattr(reliance, "session", None)
        located = session.locate(uri) if session is not None else None
        root = getattr(getattr(located, "workspace", None), "root", None)
        if located is None or root is None:
            return checks_for(target)
        index = located.workspace.index
        return checks_for(target, root=Path(root), relative=located.key, references=index.references)

    def target_at(self, document: Document, offset: int) -> Target | None:
        # The request's tree (only the edited statements parsed anew), not a whole
        # reparse: code actions ask at every cursor move.
        tree = document.request_tree()
        if tree is None:
            return None
        return function_at(document.text, offset, tree)

    # -- the run -------------------------------------------------------------------------

    async def run(self, uri: str, position: types.Position, *, at_cursor: bool) -> Offer | None:
        """Draw, test and rank for the function at ``position``; None when there is no
        function there or nothing checks it (the caller says so, or falls back)."""
        ls = self.server
        document, offset = document_at(ls.documents, uri, position)
        if document.oversized or ls.documents.out_of_sync(uri):
            return None
        if not may_complete(uri, document.language_id, ls.settings).allowed:
            return None
        target = self.target_at(document, offset)
        if target is None:
            return None
        checks = await asyncio.to_thread(self.checks, uri, target)
        if checks.empty:
            return None
        previous = self._running.pop(uri, None)
        if previous is not None:
            previous.cancel()  # a newer request supersedes the running one
        run = _Run()
        self._running[uri] = run
        try:
            return await self._run(document, target, checks, offset, run, at_cursor=at_cursor)
        finally:
            if self._running.get(uri) is run:
                del self._running[uri]

    async def _run(
        self, document: Document, target: Target, checks: Checks, offset: int, run: _Run,
        *, at_cursor: bool,
    ) -> Offer | None:
        ls = self.server
        settings = ls.settings
        k = settings.tested_candidates
        text, version = document.text, document.version
        start, end = body_range(text, target, offset, at_cursor=at_cursor)
        drawn_on = document
        if end > start:  # draw a fresh body where the old one was
            drawn_on = Document(uri=document.uri, text=text[:start] + text[end:], version=version,
                                language_id=document.language_id)
        loop = asyncio.get_running_loop()
        progress = Progress(ls, f"Ghostpilot: tested {target.name}", kind="tested", cancellable=True,
                            on_cancel=run.cancel)
        await progress.begin(f"drawing {k} candidates ({checks.describe()})")
        ls.send_status("generating")
        overrides = Overrides("block", settings.tested_max_tokens, settings.tested_temperature,
                              settings.top_p, seed=None)
        shift = end - start
        forced = forced_candidates(start, end, k)

        def report(done: int, total: int, passing: int) -> None:
            message = f"testing {total} candidates: {passing} pass" + (f" ({done}/{total} run)" if done < total else "")
            loop.call_soon_threadsafe(progress.report, message)

        # Each candidate is tested as soon as its sequence ends, while the others are drawn.
        tester = Tester(text, checks, timeout_s=settings.tested_timeout_s, workers=2, cancel=run.event,
                        progress=report, expected=k + len(forced))

        def drawn_one(index: int, suggestion: Suggestion) -> None:
            tester.add(Candidate(suggestion.text.rstrip("\n") if shift else suggestion.text, suggestion.start,
                                 suggestion.end + shift, suggestion.mean_logprob, index))

        run.drawing = asyncio.ensure_future(ls.engine.candidates(
            drawn_on, start, k=k, overrides=overrides, key=document.uri,  # typing supersedes it
            on_candidate=drawn_one))
        try:
            drawn = await run.drawing
        except (Cancelled, asyncio.CancelledError) as error:
            ours = run.event.is_set() or isinstance(error, Cancelled)  # else $/cancelRequest
            run.cancel()
            progress.end("cancelled")
            ls.send_status("ready")
            if not ours:
                raise
            raise Cancelled("cancelled") from None
        except ModelUnavailable as error:
            run.cancel()
            ls.report_error(f"model:{error}", str(error))
            ls.send_status("error", message=str(error))
            progress.end(str(error))
            await asyncio.to_thread(tester.outcome)
            return None
        finally:
            if run.event.is_set():  # the runs already started stop; collect the pool
                await asyncio.to_thread(tester.outcome)
        cancel = run.event
        for candidate in forced:
            tester.add(candidate)
        try:
            outcome = await asyncio.to_thread(tester.outcome)
        except asyncio.CancelledError:
            cancel.set()
            progress.end("cancelled")
            raise
        if outcome.cancelled:
            progress.end("cancelled")
            ls.send_status("ready")
            raise Cancelled("cancelled")
        progress.end(outcome.summary())
        ls.send_status("ready")
        model = drawn[0].model if drawn else ""
        suggestions = []
        for candidate in outcome.candidates:
            suggestion = Suggestion(candidate.text, candidate.start, candidate.end, "block", uri=document.uri,
                                    version=version, model=model, tested=evidence_of(candidate, checks))
            ls.remember(suggestion)
            suggestions.append(suggestion)
        offer = Offer(document.uri, version, target, outcome, suggestions)
        self.offers[document.uri] = offer
        return offer

    def offer_for(self, document: Document, offset: int) -> Offer | None:
        offer = self.offers.get(document.uri)
        if offer is None or offer.version != document.version:
            return None
        if not offer.target.start <= offset <= max(offer.target.end, offer.target.body_start):
            return None
        return offer


# A narrow test seam: a JSON list of bodies added to the drawn candidates (the e2e test
# forces a candidate that loops forever or forks through it). Unset in normal use.
FORCED_ENV = "GHOSTPILOT_TESTED_FORCED_CANDIDATES"


def forced_candidates(start: int, end: int, first_index: int) -> list[Candidate]:
    raw = os.environ.get(FORCED_ENV)
    if not raw:
        return []
    try:
        bodies = [str(body) for body in json.loads(raw)]
    except (ValueError, TypeError):
        log.warning("%s is not a JSON list of strings; ignored", FORCED_ENV)
        return []
    return [Candidate(body, start, end, -100.0, first_index + i) for i, body in enumerate(bodies)]


def evidence_of(candidate: Candidate, checks: Checks) -> dict[str, Any]:
    """What an accepted tested candidate passed (the reliance record keeps it)."""
    evidence = candidate.evidence
    return {
        "function": checks.name,
        "examples": list(evidence.examples) if evidence else [],
        "tests": dict(evidence.tests) if evidence else {},
        "testsReferencing": list(checks.tests),
        "label": evidence.label() if evidence else "not tested",
    }


async def inline(
    ls: GhostpilotServer, uri: str, position: types.Position
) -> tuple[types.InlineCompletionList | None, types.Position]:
    """Explicitly invoked inline completion in an empty or partial body of a function
    with examples or referencing tests: the ranked candidates. Otherwise (None, the
    cursor in the current text) and the caller completes as usual there: the document
    is parsed off the event loop first, and edits that land meanwhile move the cursor."""
    tested = attach(ls)
    document, offset = document_at(ls.documents, uri, position)
    cursor = await parsed_cursor(ls.documents, document, offset)
    if cursor is None:  # an edit at the cursor's line, or the document went away: stale
        return types.InlineCompletionList(items=[]), position
    revision, _, offset = cursor
    line, character = document.position_at(offset)
    moved = types.Position(line=line, character=character)
    target = tested.target_at(document, offset)
    if target is None or offset < target.body_start:
        return None, moved
    try:
        offer = await tested.run(uri, moved, at_cursor=True)
    except Cancelled:  # superseded or cancelled: nothing to show
        return types.InlineCompletionList(items=[]), moved
    if offer is None:
        if document.revision != revision:  # typed on meanwhile: a newer request follows
            return types.InlineCompletionList(items=[]), moved
        return None, moved
    current = ls.documents.get(uri) if uri in ls.documents else None
    if current is None or current.version != offer.version:
        return types.InlineCompletionList(items=[]), moved  # edited meanwhile: stale
    return types.InlineCompletionList(items=inline_items(current, offer)), moved


def attach(server: GhostpilotServer) -> TestedSuggestions:
    found = getattr(server, ATTRIBUTE, None)
    if isinstance(found, TestedSuggestions):
        return found
    tested = TestedSuggestions(server)
    setattr(server, ATTRIBUTE, tested)
    return tested


def inline_items(document: Document, offer: Offer) -> list[types.InlineCompletionItem]:
    """The ranked candidates as inline completion items, best first; each command's title
    is its "candidate 1/5 · passes ..." line and its second argument the details."""
    items = []
    count = len(offer.suggestions)
    summary = offer.outcome.summary()
    for position, (suggestion, candidate) in enumerate(zip(offer.suggestions, offer.outcome.candidates), 1):
        title = candidate_title(position, count, candidate)
        details = {"candidate": position, "of": count, "title": title, "summary": summary,
                   "evidence": candidate.evidence.to_json() if candidate.evidence else None}
        items.append(types.InlineCompletionItem(
            insert_text=suggestion.text,
            range=to_range(document, suggestion.start, suggestion.end),
            command=types.Command(title=title, command="ghostpilot.accept", arguments=[suggestion.id, details]),
        ))  # fmt: skip
    return items


def answer(document: Document, offer: Offer) -> dict[str, Any]:
    """The command's answer: the summary and the ranked candidates."""
    out = []
    for position, (suggestion, candidate) in enumerate(zip(offer.suggestions, offer.outcome.candidates), 1):
        out.append({
            "id": suggestion.id, "title": candidate_title(position, len(offer.suggestions), candidate),
            "text": suggestion.text, "range": _range_json(to_range(document, suggestion.start, suggestion.end)),
            "evidence": candidate.evidence.to_json() if candidate.evidence else None,
        })  # fmt: skip
    outcome = offer.outcome
    return {"summary": outcome.summary(), "drawn": outcome.drawn, "distinct": len(outcome.candidates),
            "passing": outcome.passing, "candidates": out}


def _range_json(value: types.Range) -> dict[str, Any]:
    return {"start": {"line": value.start.line, "character": value.start.character},
            "end": {"line": value.end.line, "character": value.end.character}}


def setup(server: GhostpilotServer) -> None:
    tested = attach(server)

    def code_actions(ls: GhostpilotServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        only = params.context.only
        if only and not any(KIND == want or KIND.startswith(f"{want}.") for want in only):
            return []
        try:
            document, offset = document_at(ls.documents, uri, params.range.start)
        except JsonRpcInvalidParams:
            return []
        if not may_complete(uri, document.language_id, ls.settings).allowed:
            return []
        actions: list[types.CodeAction] = []
        offer = tested.offer_for(document, offset)
        if offer is not None:
            for position, (suggestion, candidate) in enumerate(
                zip(offer.suggestions, offer.outcome.candidates), 1
            ):
                edit = types.TextEdit(range=to_range(document, suggestion.start, suggestion.end),
                                      new_text=suggestion.text)
                actions.append(types.CodeAction(
                    title=insert_title(position, candidate), kind=KIND,
                    edit=types.WorkspaceEdit(changes={uri: [edit]}),
                    command=types.Command(title="Accept", command="ghostpilot.accept", arguments=[suggestion.id]),
                ))  # fmt: skip
        target = tested.target_at(document, offset)
        if target is not None and not tested.checks(uri, target).empty:
            actions.insert(0, types.CodeAction(
                title=ACTION_TITLE, kind=KIND,
                command=types.Command(title=ACTION_TITLE, command=COMMAND,
                                      arguments=[uri, {"line": params.range.start.line,
                                                       "character": params.range.start.character}]),
            ))  # fmt: skip
        return actions

    server.add_code_action_provider([KIND], code_actions)

    @server.command(COMMAND)
    async def suggest_tested(ls: GhostpilotServer, *args: Any) -> dict[str, Any]:
        arguments = command_arguments(args)
        if len(arguments) < 2 or not isinstance(arguments[0], str) or not isinstance(arguments[1], dict):
            raise JsonRpcInvalidParams(f"{COMMAND} expects (uri, position), got {shown(arguments)}")
        uri, position = arguments[0], command_position(COMMAND, arguments[1])
        try:
            offer = await tested.run(uri, position, at_cursor=False)
        except Cancelled:
            return {"summary": "cancelled", "candidates": [], "cancelled": True}
        if offer is None:
            raise JsonRpcInvalidParams(
                "No tested suggestion here: put the cursor in a function whose docstring has >>> "
                "examples or that a workspace test references.")
        document = ls.documents.get(uri)
        message = f"Ghostpilot: {offer.outcome.summary()}."
        if offer.suggestions:
            message += " The code actions there insert a candidate."
        ls.window_show_message(types.ShowMessageParams(type=types.MessageType.Info, message=message))
        return answer(document, offer)

