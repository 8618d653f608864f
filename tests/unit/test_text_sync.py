"""The text-sync feature on its own: its handlers, given params as a client sends them,
keep the DocumentStore equal to a reference model of LSP; whatever cannot land is said.

The handlers run on a small stand-in for the server (documents, settings, engine and
report_error), so no pygls machinery sits between the params and the store.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import random
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.config import Settings
from lsp_server.engine import CompletionEngine, Snapshot, Suggestion
from lsp_server.features import completion, inline_completion, text_sync
from lsp_server.parsing import syntax
from lsp_server.parsing.document import Document, DocumentStore, RangeEdit, TextChange
from lsp_server.parsing.positions import LineIndex
from tests import lsp_text_model as model

URI = "file:///tmp/ghostpilot-sync/sample.py"


class StandInServer:
    """What the text-sync and completion features use of GhostpilotServer."""

    def __init__(self, engine: Any = None, **settings: Any) -> None:
        self.documents = DocumentStore()
        self.settings = Settings(n_threads=1, **settings)
        self.engine = engine or CompletionEngine(None, lambda: self.settings)  # type: ignore[arg-type]
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.reports: list[tuple[str, str]] = []
        self.remembered: list[Suggestion] = []
        self.superseded_requests = 0
        self.client_capabilities = types.ClientCapabilities()

    def feature(self, method: str, options: Any = None) -> Callable[[Any], Any]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.handlers[method] = handler
            return handler

        return register

    def report_error(self, key: str, message: str, level: Any = None) -> None:
        self.reports.append((key, message))

    def send_status(self, state: str, **extra: Any) -> None:
        pass

    def remember(self, suggestion: Suggestion) -> None:
        self.remembered.append(suggestion)

    def call(self, method: str, params: Any) -> Any:
        return self.handlers[method](self, params)


def server(engine: Any = None, **settings: Any) -> StandInServer:
    stand_in = StandInServer(engine, **settings)
    for feature in (text_sync, inline_completion, completion):
        feature.setup(stand_in)
    return stand_in


def did_open(uri: str, text: str, version: int = 1, language_id: str = "python") -> types.DidOpenTextDocumentParams:
    return types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=version, text=text)
    )


did_change = model.did_change_params


def edit(sl: int, sc: int, el: int, ec: int, text: str) -> model.Change:
    return model.Change(((sl, sc), (el, ec)), text)


# -- the examples from the issue, and each kind of line end ---------------------------------


@pytest.mark.parametrize(
    ("start", "changes"),
    [
        pytest.param("abc", [edit(0, 10, 0, 10, "X")], id="insert-past-line-end"),
        pytest.param(
            "def f():\n    return 1\x0c\n\n",
            [edit(2, 0, 2, 0, "  # note")],
            id="form-feed-is-not-a-line-end",
        ),
        pytest.param("a\x0bb\nc", [edit(1, 0, 1, 1, "Z")], id="vertical-tab"),
        pytest.param("a\x1cb\x1dc\x1ed\nend", [edit(1, 3, 1, 3, "!")], id="file-group-record-separators"),
        pytest.param("a\x85b\nend", [edit(1, 0, 1, 0, ">")], id="next-line-x85"),
        pytest.param("a\u2028b\u2029c\nend", [edit(1, 1, 1, 99, "")], id="unicode-line-paragraph-separators"),
        pytest.param("a = 1\rb = 2\r", [edit(1, 4, 1, 5, "3")], id="lone-cr-is-a-line-end"),
        pytest.param("a\r\nb", [edit(0, 1, 0, 1, "\n")], id="insert-before-crlf"),
        pytest.param("a\rb", [edit(0, 1, 0, 1, "x"), edit(1, 0, 1, 0, "\n")], id="cr-then-lf-edits"),
        pytest.param("a\rb", [edit(1, 0, 1, 0, "\n")], id="lf-after-cr-joins-crlf"),
        pytest.param("a\r\nb", [edit(0, 5, 1, 0, "")], id="past-end-start-deletes-line-end"),
        pytest.param("ab", [edit(0, 2, 0, 0, "X")], id="reversed-range"),
        pytest.param("ab\ncd", [edit(7, 3, 9, 0, "!")], id="lines-past-the-end"),
        pytest.param(f"s = '{model.EMOJI}'", [edit(0, 6, 0, 6, "x")], id="inside-surrogate-pair"),
    ],
)
def test_changes_follow_lsp(start: str, changes: list[model.Change]) -> None:
    ls = server()
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, start))
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 2, changes))
    expected = start
    for change in changes:
        expected = model.apply(expected, change)
    document = ls.documents.get(URI)
    assert document.text == expected
    assert document.version == 2
    assert ls.reports == []


def test_issue_examples_read_as_the_editor_has_them() -> None:
    ls = server()
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, "abc"))
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 2, [edit(0, 10, 0, 10, "X")]))
    assert ls.documents.get(URI).text == "abcX"
    page = "def f():\n    return 1\n\x0c\n"
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, page))
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 2, [edit(2, 1, 2, 1, "  # note")]))
    assert ls.documents.get(URI).text == "def f():\n    return 1\n\x0c  # note\n"


def test_handlers_leave_params_as_sent() -> None:
    ls = server()
    opened = did_open(URI, "abc\x0cdef\n")
    before_open = copy.deepcopy(opened)
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, opened)
    changed = did_change(URI, 2, [edit(0, 40, 3, 9, "x"), edit(1, 0, 0, 0, "y")])
    before_change = copy.deepcopy(changed)
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, changed)
    assert opened == before_open
    assert changed == before_change


# -- edit storm: 10,000 random edits against the reference model -------------------------


def storm(seed: int, documents: int, edits_per_document: int) -> Iterator[tuple[str, str, str]]:
    """(uri, expected text, server text) after every notification of a random edit storm."""
    rng = random.Random(seed)
    ls = server()
    for number in range(documents):
        encoding = ("utf-16", "utf-16", "utf-8", "utf-32")[number % 4]
        ls.documents.encoding = encoding
        uri = f"file:///tmp/ghostpilot-storm/doc{number}.py"
        expected = model.stored(model.random_text(rng, rng.randint(0, 20)))
        ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(uri, expected))
        version, sent = 1, 0
        while sent < edits_per_document:
            changes = []
            for _ in range(min(rng.choice((1, 1, 2, 3, 5)), edits_per_document - sent)):
                change = model.random_change(rng, expected, encoding)
                changes.append(change)
                expected = model.apply(expected, change, encoding)
            sent += len(changes)
            version += 1
            ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(uri, version, changes))
            yield uri, expected, ls.documents.get(uri).text
        document = ls.documents.get(uri)
        assert document.version == version
        assert document.source == document.text.encode("utf-8")
        fresh = LineIndex.build(document.text)
        assert np.array_equal(document.index.char_starts, fresh.char_starts)
        assert np.array_equal(document.index.byte_starts, fresh.byte_starts)
        assert document.tree is not None
        assert str(document.tree.root_node) == str(syntax.parse(document.source).root_node)
        assert ls.documents.out_of_sync(uri) is None
    assert all(key.startswith("surrogates:") for key, _ in ls.reports), ls.reports


def test_edit_storm_of_10000_edits_has_no_divergence() -> None:
    divergent = [uri for uri, expected, got in storm(seed=10, documents=50, edits_per_document=200) if got != expected]
    assert divergent == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.sampled_from(["utf-16", "utf-8", "utf-32"]))
def test_random_notifications_match_the_reference(rng: random.Random, encoding: str) -> None:
    ls = server()
    ls.documents.encoding = encoding
    expected = model.stored(model.random_text(rng, rng.randint(0, 10)))
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, expected))
    for version in range(2, 12):
        sent, changes = expected, []
        for _ in range(rng.randint(1, 4)):
            changes.append(model.random_change(rng, expected, encoding))
            expected = model.apply(expected, changes[-1], encoding)
        ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, version, changes))
        assert ls.documents.get(URI).text == expected, (sent, changes)


# -- lone surrogates ---------------------------------------------------------------------------


def test_lone_surrogate_in_did_open_opens_the_document() -> None:
    ls = server()
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, "s = '\ud83d'\nx = 1\n"))
    document = ls.documents.get(URI)
    assert document.text == "s = '\ufffd'\nx = 1\n"
    assert document.tree is not None
    assert [key for key, _ in ls.reports] == [f"surrogates:{URI}"]


def test_lone_surrogate_in_did_change_keeps_every_change_and_the_version() -> None:
    ls = server()
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, "a\nb\n"))
    changes = [edit(0, 1, 0, 1, "1"), edit(1, 0, 1, 0, "\udc00"), edit(1, 1, 1, 1, "2"), edit(2, 0, 2, 0, "c")]
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 5, changes))
    document = ls.documents.get(URI)
    assert document.text == "a1\n\ufffd2b\nc"
    assert document.version == 5
    assert [key for key, _ in ls.reports] == [f"surrogates:{URI}"]


# -- what cannot land is said ------------------------------------------------------------------


def test_a_change_that_cannot_land_marks_the_document_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    apply = Document.apply

    def failing(self: Document, change: RangeEdit) -> TextChange:
        if change.text == "boom":
            raise RuntimeError("cannot apply")
        return apply(self, change)

    monkeypatch.setattr(Document, "apply", failing)
    ls = server()
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, "a\nb\n"))
    changes = [edit(0, 0, 0, 0, "x"), edit(1, 0, 1, 0, "boom"), edit(1, 0, 1, 0, "z")]
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 3, changes))
    document = ls.documents.get(URI)
    assert document.text == "xa\nb\n"  # the first change landed, the rest could not
    assert document.version == 3
    reason = ls.documents.out_of_sync(URI)
    assert reason is not None and "change 2 of 3" in reason and "cannot apply" in reason
    assert [key for key, _ in ls.reports] == [f"out-of-sync:{URI}"]
    assert "close and reopen" in ls.reports[0][1]
    # The full text (a whole-document change) brings it back in sync.
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 4, [model.Change(None, "fresh\n")]))
    assert ls.documents.out_of_sync(URI) is None
    assert document.text == "fresh\n"


async def test_document_out_of_sync_gets_no_suggestion() -> None:
    engine = SlowEngine()
    engine.release.set()
    ls = server(engine)
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, SAMPLE))
    assert len((await ls.call(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline(5, 4))).items) == 1
    ls.documents.mark_out_of_sync(URI, "a didChange failed validation")
    assert (await ls.call(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline(5, 4))).items == []


def test_did_change_for_unknown_documents_is_one_message() -> None:
    ls = server()
    for number in range(300):
        ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(f"file:///tmp/nope{number}.py", 2, [edit(0, 0, 0, 0, "x")]))
    assert len({key for key, _ in ls.reports}) == 1
    assert "not open" in ls.reports[0][1]


# -- documents above maxFileSizeKb ---------------------------------------------------------------


def test_oversized_document_is_kept_in_sync_but_not_parsed_and_said_once() -> None:
    ls = server(max_file_size_kb=1)
    body = "x = 1\n" * 200  # 1,200 bytes: above 1 KiB
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, body))
    document = ls.documents.get(URI)
    assert document.oversized and document.tree is None
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 2, [edit(0, 0, 0, 0, "y = 2\n")]))
    assert document.text == "y = 2\n" + body
    assert [key for key, _ in ls.reports] == [f"oversized:{URI}"]
    assert "maxFileSizeKb" in ls.reports[0][1]
    # Back under the limit: parsed again.
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 3, [edit(1, 0, 150, 0, "")]))
    assert not document.oversized
    assert document.tree is not None
    assert str(document.tree.root_node) == str(syntax.parse(document.source).root_node)


async def test_oversized_document_gets_no_suggestion() -> None:
    class Engine:
        called = False

        async def complete(self, *args: Any, **kwargs: Any) -> None:
            Engine.called = True

        def forget(self, uri: str) -> None:
            pass

    ls = server(Engine(), max_file_size_kb=1)
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, "x = 1\n" * 200 + "def f():\n    "))
    result = await ls.call(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline(201, 4))
    assert result.items == [] and not Engine.called


# -- nothing of a closed document stays in memory ------------------------------------------------


def inline(line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    )


def test_close_drops_the_engines_snapshot() -> None:
    ls = server()
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, "class A:\n    def f(self):\n        pass\n"))
    document = ls.documents.get(URI)
    snapshot = Snapshot.of(document)
    ls.engine._finish(snapshot, Suggestion("x", 0, 0, "line", uri=URI), 0.0)
    assert URI in ls.engine._recent
    kept = weakref.ref(snapshot), weakref.ref(document)
    del snapshot, document
    gc.disable()
    try:
        ls.call(types.TEXT_DOCUMENT_DID_CLOSE, types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=URI)))  # fmt: skip
        assert URI not in ls.engine._recent
        assert [ref() for ref in kept] == [None, None]
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "position",
    [pytest.param((0, 99), id="past-line-end"), pytest.param((40, 0), id="past-document-end")],
)
async def test_error_answer_keeps_no_document_alive(position: tuple[int, int]) -> None:
    """pygls runs a request in a task; a failed task and its exception refer to each other,
    so what the traceback's frames hold lives until the cyclic collector runs."""
    ls = server()
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, "x = 1\n"))
    kept = weakref.ref(ls.documents.get(URI))
    gc.disable()
    try:
        task = asyncio.ensure_future(ls.call(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline(*position)))
        with pytest.raises(JsonRpcInvalidParams):
            await task
        ls.call(types.TEXT_DOCUMENT_DID_CLOSE, types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=URI)))  # fmt: skip
        assert task.exception() is not None  # the failed task is still held...
        assert kept() is None  # ...and the document is gone all the same
    finally:
        gc.enable()


# -- a suggestion's range follows edits that land while it is generated ----------------------------


class SlowEngine:
    """Answers ``return 1`` at the cursor once ``release`` is set."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def complete(self, document: Any, offset: int, *, explicit: bool, key: str) -> Suggestion:
        version = document.version
        self.started.set()
        await self.release.wait()
        return Suggestion("return 1", offset, offset, "line", uri=document.uri, version=version)

    def forget(self, uri: str) -> None:
        pass


SAMPLE = "import os\n\n\ndef f():\n    x = 1\n    \n"


@pytest.mark.parametrize(
    ("changes", "stale"),
    [
        pytest.param([edit(0, 0, 0, 0, "# a\n" * 30)], False, id="30-lines-above"),
        pytest.param([edit(5, 4, 5, 4, "")], False, id="nothing-changed"),
        pytest.param([edit(6, 0, 6, 0, "y = 2\n")], False, id="below-the-cursor"),
        pytest.param([edit(4, 4, 4, 9, "xyz = 10"), edit(0, 0, 1, 0, "")], False, id="two-above"),
        pytest.param([edit(5, 4, 5, 4, "r")], True, id="typed-at-the-cursor"),
        pytest.param([edit(5, 0, 5, 2, "")], True, id="indentation-deleted"),
        pytest.param([edit(4, 9, 5, 0, "\n")], True, id="line-end-before-the-cursor-line"),
        pytest.param([edit(4, 0, 4, 4, "")], False, id="line-above-edited"),
        pytest.param([model.Change(None, SAMPLE)], True, id="whole-document-replaced"),
    ],
)
async def test_suggestion_range_follows_edits_during_generation(
    changes: list[model.Change], stale: bool
) -> None:
    engine = SlowEngine()
    ls = server(engine)
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, SAMPLE))
    request = asyncio.ensure_future(ls.call(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline(5, 4)))
    await engine.started.wait()
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 2, changes))
    engine.release.set()
    result = await request
    if stale:
        assert result.items == []
        return
    expected = SAMPLE
    cursor = model.offset_of(SAMPLE, 5, 4)
    marked = SAMPLE[:cursor] + "\x00" + SAMPLE[cursor:]  # follow the cursor through the edits
    for change in changes:
        expected = model.apply(expected, change)
        marked = model.apply(marked, change)
    line, character = model.position_of(expected, marked.index("\x00"))
    (item,) = result.items
    assert (item.range.start.line, item.range.start.character) == (line, character)
    assert (item.range.end.line, item.range.end.character) == (line, character)
    assert ls.remembered[-1].start == marked.index("\x00")


async def test_edits_during_the_parse_move_the_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tree is brought up to date on a thread; edits that land meanwhile are applied
    (the loop is free) and the request's cursor follows them."""
    parsing, resume = threading.Event(), threading.Event()
    parse = syntax.parse

    def slow_parse(source: bytes, old: Any = None) -> Any:
        parsing.set()
        resume.wait(10)
        return parse(source, old)

    engine = SlowEngine()
    engine.release.set()
    ls = server(engine)
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, SAMPLE))
    monkeypatch.setattr(syntax, "parse", slow_parse)
    request = asyncio.ensure_future(ls.call(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline(5, 4)))
    while not parsing.is_set():
        await asyncio.sleep(0.01)
    ls.call(types.TEXT_DOCUMENT_DID_CHANGE, did_change(URI, 2, [edit(0, 0, 0, 0, "# one\n# two\n")]))
    resume.set()
    result = await request
    (item,) = result.items
    assert (item.range.start.line, item.range.start.character) == (7, 4)
    assert ls.remembered[-1].start == model.offset_of("# one\n# two\n" + SAMPLE, 7, 4)
    monkeypatch.undo()
    assert str(ls.documents.get(URI).tree.root_node) == str(parse(ls.documents.get(URI).source).root_node)


async def test_suggestion_for_a_document_closed_during_generation_is_dropped() -> None:
    engine = SlowEngine()
    ls = server(engine)
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, SAMPLE))
    request = asyncio.ensure_future(ls.call(types.TEXT_DOCUMENT_INLINE_COMPLETION, inline(5, 4)))
    await engine.started.wait()
    ls.call(types.TEXT_DOCUMENT_DID_CLOSE, types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=URI)))  # fmt: skip
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, SAMPLE))
    engine.release.set()
    assert (await request).items == []


# -- the debug request ---------------------------------------------------------------------------


def test_document_request_answers_the_servers_copy() -> None:
    ls = server()
    ls.call(types.TEXT_DOCUMENT_DID_OPEN, did_open(URI, "a\rb", version=4))
    state = ls.call(text_sync.DOCUMENT_REQUEST, {"uri": URI})
    assert state == {
        "uri": URI, "version": 4, "languageId": "python", "text": "a\rb", "lineCount": 2,
        "outOfSync": None, "oversized": False,
    }  # fmt: skip
    with pytest.raises(JsonRpcInvalidParams, match="not open"):
        ls.call(text_sync.DOCUMENT_REQUEST, {"uri": "file:///nope.py"})
    with pytest.raises(JsonRpcInvalidParams, match="expects"):
        ls.call(text_sync.DOCUMENT_REQUEST, {"url": URI})
