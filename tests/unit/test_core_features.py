"""The core feature modules (accept, completion, configuration, code actions, _common) and
the server's shared helpers (listener loop, $/progress, status), on a real
GhostpilotServer: handlers are called as pygls calls them, what the server sends is read
off its writer, and the model is a stand-in where one is needed (no weights)."""

from __future__ import annotations

import asyncio
import json
import typing
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.backends.base import Cancelled, GenerationResult, ModelInfo, ModelUnavailable
from lsp_server.config import DEFAULT_MODEL
from lsp_server.engine import Suggestion
from lsp_server.features import _common, accept, completion, configuration
from lsp_server.parsing.document import Document, DocumentStore, RangeEdit
from lsp_server.server import STATUS_STATES, GhostpilotServer, Progress, create_server

URI = "file:///w/app.py"
TEXT = "def mean(xs):\n    \n"
CURSOR = types.Position(line=1, character=4)


class Wire:
    """The server's writer: every message it sends, decoded."""

    def __init__(self, server: GhostpilotServer) -> None:
        self.sent: list[dict[str, Any]] = []
        server.protocol.set_writer(self, include_headers=False)

    def write(self, data: bytes) -> None:
        self.sent.append(json.loads(data))

    def close(self) -> None:
        pass

    def notifications(self, method: str) -> list[Any]:
        return [m["params"] for m in self.sent if m.get("method") == method and "id" not in m]

    def requests(self, method: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("method") == method and "id" in m]

    def shown(self) -> list[str]:
        return [p["message"] for p in self.notifications("window/showMessage")]


def initialize(server: GhostpilotServer, capabilities: dict[str, Any] | None = None, **extra: Any) -> None:
    """The client's initialize request, through pygls (answered on the wire)."""
    params = {"processId": None, "rootUri": None, "capabilities": capabilities or {}, **extra}
    server.protocol.handle_payload({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": params})  # type: ignore[attr-defined]


@pytest.fixture
def server() -> GhostpilotServer:
    return create_server()


@pytest.fixture
async def live(server: GhostpilotServer) -> GhostpilotServer:
    """Initialized, with the event loop the server sends from."""
    server.loop = asyncio.get_running_loop()
    return server


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def suggestion(text: str = "return sum(xs) / len(xs)", start: int = 18, **extra: Any) -> Suggestion:
    return Suggestion(text=text, start=start, end=start, mode="line", uri=URI, model="m", **extra)


# -- every handler's annotations resolve (pygls reads them) ------------------------------------


def test_every_handler_is_typed_with_the_server_and_its_hints_resolve(server: GhostpilotServer) -> None:
    """pygls converts a command's arguments with typing.get_type_hints: a name imported
    only under TYPE_CHECKING made every command of a module fail with InvalidParams."""
    manager = server.protocol.fm
    handlers = {**manager.commands, **manager.features}
    assert {accept.ACCEPT, "ghostpilot.generateDocstring", "ghostpilot.relianceReport"} <= set(manager.commands)
    for name, handler in handlers.items():
        function = getattr(handler, "func", handler)
        hints = typing.get_type_hints(function)
        assert hints.get("ls") is GhostpilotServer, (name, hints)


# -- _common -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param((["file:///a.py", "add"],), ["file:///a.py", "add"], id="one-list"),
        pytest.param(("file:///a.py", "add"), ["file:///a.py", "add"], id="spread"),
        pytest.param(({"uri": "x"},), [{"uri": "x"}], id="one-object"),
        pytest.param((), [], id="none"),
    ],
)
def test_command_arguments(args: tuple[Any, ...], expected: list[Any]) -> None:
    assert _common.command_arguments(args) == expected


def test_optional_string() -> None:
    assert _common.optional_string(["a", 2], 0) == "a"
    assert _common.optional_string(["a", 2], 1) is None
    assert _common.optional_string([], 0) is None


@pytest.mark.parametrize(
    ("text", "start", "end", "expected"),
    [
        pytest.param("ab\ncd", 1, 4, ((0, 1), (1, 1)), id="two-lines"),
        pytest.param("x = '𝄞'\ny", 6, 8, ((0, 7), (1, 0)), id="astral-is-two-utf16-units"),
        pytest.param("a\r\nb", 3, 4, ((1, 0), (1, 1)), id="crlf"),
    ],
)
def test_to_range_and_back(text: str, start: int, end: int, expected: tuple[tuple[int, int], tuple[int, int]]) -> None:
    document = Document(uri=URI, text=text)
    found = _common.to_range(document, start, end)
    assert ((found.start.line, found.start.character), (found.end.line, found.end.character)) == expected
    assert _common.range_offsets(document, found) == (start, end)


def test_range_offsets_clamp_past_the_line_end() -> None:
    document = Document(uri=URI, text="ab\ncd\n")
    past = types.Range(start=types.Position(line=0, character=40), end=types.Position(line=9, character=0))
    assert _common.range_offsets(document, past) == (2, 6)


@pytest.mark.parametrize(
    ("uri", "position", "message"),
    [
        pytest.param("file:///w/other.py", CURSOR, "other.py", id="not-open"),
        pytest.param(URI, types.Position(line=7, character=0), "app.py", id="past-the-end"),
    ],
)
def test_document_at_bad_input_is_invalid_params(uri: str, position: types.Position, message: str) -> None:
    documents = DocumentStore()
    documents.open(URI, TEXT, 1, "python")
    with pytest.raises(JsonRpcInvalidParams, match=message):
        _common.document_at(documents, uri, position)
    assert _common.document_at(documents, URI, CURSOR)[1] == TEXT.index("\n") + 5


def test_follow_edits_moves_a_suggestion_past_an_edit_above_and_drops_one_on_its_line() -> None:
    documents = DocumentStore()
    document = documents.open(URI, TEXT, 1, "python")
    revision, made = document.revision, suggestion(start=18)
    documents.change(URI, 2, [RangeEdit(((0, 0), (0, 0)), "import os\n")])
    moved = _common.follow_edits(documents, document, revision, 14, made)
    assert moved is not None and (moved.start, moved.version) == (28, 2)
    revision = document.revision
    documents.change(URI, 3, [RangeEdit(((2, 4), (2, 4)), "x")])  # the cursor's line
    assert _common.follow_edits(documents, document, revision, 24, moved) is None


class StandInEngine:
    """complete() answers what the test says, or raises it."""

    def __init__(self, answer: Suggestion | BaseException | None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, int, bool]] = []
        self.last: Suggestion | None = None

    async def complete(self, document: Document, offset: int, *, explicit: bool, key: str) -> Suggestion | None:
        self.calls.append((document.uri, offset, explicit))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def forget(self, uri: str) -> None:
        pass


def with_engine(server: GhostpilotServer, answer: Suggestion | BaseException | None) -> StandInEngine:
    engine = StandInEngine(answer)
    server.engine = engine  # type: ignore[assignment]
    return engine


async def test_the_answer_reaches_the_client_before_the_ready_status(live: GhostpilotServer) -> None:
    """A user waits for the answer; the status that says how the request ended is
    written after it, so a client reads the answer first."""
    wire = Wire(live)
    initialize(live, {"textDocument": {"inlineCompletion": {}}})
    made = suggestion(result=GenerationResult(text="x", token_count=5, prompt_tokens=40))
    with_engine(live, made)
    live.documents.open(URI, TEXT, 1, "python")
    live.protocol.handle_payload({"jsonrpc": "2.0", "id": 7, "method": "textDocument/inlineCompletion",  # type: ignore[attr-defined]
                                  "params": {"textDocument": {"uri": URI}, "position": {"line": 1, "character": 4},
                                             "context": {"triggerKind": 1}}})
    for _ in range(500):  # the request parses the document on a thread first
        if any(m.get("id") == 7 for m in wire.sent):
            break
        await asyncio.sleep(0.01)
    await settle()
    order = [("answer" if m.get("id") == 7 else m["params"]["state"]) for m in wire.sent
             if m.get("id") == 7 or m.get("method") == "ghostpilot/status"]
    assert order == ["generating", "answer", "ready"]
    answer = next(m for m in wire.sent if m.get("id") == 7)
    assert answer["result"]["items"][0]["insertText"] == made.text


async def test_a_request_whose_region_spans_two_statements_starts_a_whole_parse(live: GhostpilotServer) -> None:
    """After the answer, off the loop: the next requests' regions hold only the
    statement being edited (parsing/region.py)."""
    Wire(live)
    functions = "".join(f"def f{n}(x):\n    return x * {n}\n\n\n" for n in range(40))
    live.documents.open(URI, functions, 1, "python")
    document = live.documents.get(URI)
    assert document.tree is not None  # the first whole parse
    live.documents.change(URI, 2, [RangeEdit(((81, 17), (81, 17)), " + 1")])  # in f20
    live.documents.change(URI, 3, [RangeEdit(((89, 17), (89, 17)), " + 2")])  # in f22
    made = suggestion(result=GenerationResult(text="x", token_count=5, prompt_tokens=40))
    with_engine(live, made)
    await _common.suggestion_at(live, URI, types.Position(line=89, character=21), explicit=True)
    assert document._dirty is not None and document.wants_whole_parse()
    await asyncio.gather(*_common._whole_parses.values())
    assert document._dirty is None and not document._stale


async def test_suggestion_at_remembers_it_and_reports_ready_with_its_figures(live: GhostpilotServer) -> None:
    wire = Wire(live)
    made = suggestion(result=GenerationResult(text="x", token_count=5, prompt_tokens=40, reused_tokens=30, evaluated_tokens=10),
                      latency_s=0.1234)  # fmt: skip
    engine = with_engine(live, made)
    live.documents.open(URI, TEXT, 1, "python")
    document, found = await _common.suggestion_at(live, URI, CURSOR, explicit=True)
    await settle()
    assert found is made and live.suggestions[made.id] is made and document.uri == URI
    assert engine.calls == [(URI, 18, True)]
    states = wire.notifications("ghostpilot/status")
    assert [s["state"] for s in states] == ["generating", "ready"]
    assert states[-1] | {"model": None} == {
        "state": "ready", "model": None, "latencyMs": 123.4, "promptTokens": 40, "reusedTokens": 30,
        "evaluatedTokens": 10, "generatedTokens": 5, "cached": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("uri", "language"),
    [
        pytest.param("file:///w/.env", "python", id="never-read"),
        pytest.param(URI, "markdown", id="language-not-enabled"),
    ],
)
async def test_suggestion_at_asks_nothing_where_the_policy_says_no(live: GhostpilotServer, uri: str, language: str) -> None:
    engine = with_engine(live, suggestion())
    live.documents.open(uri, TEXT, 1, language)
    assert (await _common.suggestion_at(live, uri, CURSOR, explicit=True))[1] is None
    assert engine.calls == []


async def test_suggestion_at_out_of_sync_asks_nothing(live: GhostpilotServer) -> None:
    engine = with_engine(live, suggestion())
    live.documents.open(URI, TEXT, 1, "python")
    live.documents.mark_out_of_sync(URI, "lost a change")
    assert (await _common.suggestion_at(live, URI, CURSOR, explicit=False))[1] is None
    assert engine.calls == []


async def test_suggestion_at_counts_superseded_requests(live: GhostpilotServer) -> None:
    with_engine(live, Cancelled("superseded"))
    live.documents.open(URI, TEXT, 1, "python")
    assert (await _common.suggestion_at(live, URI, CURSOR, explicit=False))[1] is None
    assert live.superseded_requests == 1


async def test_suggestion_at_without_a_model_says_so_once(live: GhostpilotServer) -> None:
    wire = Wire(live)
    with_engine(live, ModelUnavailable("no model is loaded"))
    live.documents.open(URI, TEXT, 1, "python")
    for _ in range(2):
        assert (await _common.suggestion_at(live, URI, CURSOR, explicit=False))[1] is None
    await settle()
    assert wire.shown() == ["Ghostpilot: no model is loaded"]
    assert wire.notifications("ghostpilot/status")[-1]["state"] == "error"


# -- accept and stats --------------------------------------------------------------------------


def test_accept_marks_it_and_tells_every_listener_even_after_a_failing_one(server: GhostpilotServer) -> None:
    heard: list[str] = []

    def broken(_: Suggestion) -> None:
        raise RuntimeError("tracker down")

    server.acceptance_listeners[:] = [broken, lambda s: heard.append(s.id)]
    made = suggestion()
    server.remember(made)
    reported: list[tuple[str, str]] = []
    server.report_error = lambda key, message, level=None: reported.append((key, message))  # type: ignore[method-assign]
    handler = server.protocol.fm.commands[accept.ACCEPT]
    assert handler(made.id) == {"accepted": made.id}
    assert heard == [made.id] and made.accepted_at is not None
    assert [m for _, m in reported] == ["tracking an accepted suggestion failed: tracker down"]
    assert handler([made.id]) == {"accepted": made.id}  # one list, as older clients send


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param((), "expects a suggestion id", id="none"),
        pytest.param((5,), "expects a suggestion id", id="not-a-string"),
        pytest.param(("nope",), "unknown or expired suggestion id 'nope'", id="unknown"),
    ],
)
def test_accept_bad_arguments(server: GhostpilotServer, args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(JsonRpcInvalidParams, match=message):
        server.protocol.fm.commands[accept.ACCEPT](*args)


def test_stats() -> None:
    info = ModelInfo(name="gemma", path="/m.gguf", fim_template=None, n_ctx=2048, n_threads=2, n_gpu_layers=0)
    assert accept.stats(None, None, "loading", 0, 10) == {
        "model": None, "modelState": "loading", "fimTemplate": None, "rssBytes": 10, "supersededRequests": 0, "last": None,
        "lastRequest": None, "kvCache": None, "continuedSuggestions": 0,
        "startedEarly": 0, "definitionsRefreshed": 0, "threads": None,
    }  # fmt: skip
    threads = {"configured": 2, "inUse": 1, "switches": 1, "msPerToken": {"1": 7.0, "2": 30.0}}
    assert accept.stats(None, None, "ready", 0, 10, threads=threads)["threads"] == threads
    assert accept.stats(None, None, "ready", 0, 10, continued=2)["continuedSuggestions"] == 2
    assert accept.stats(None, None, "ready", 0, 10, definitions_refreshed=4)["definitionsRefreshed"] == 4
    kv = {"limitMb": 256.0, "usedMb": 1.5, "entries": 1}
    assert accept.stats(None, None, "ready", 0, 10, kv_cache=kv)["kvCache"] == kv
    result = GenerationResult(text="x", token_count=4, prompt_tokens=9, reused_tokens=5, evaluated_tokens=4,
                              prompt_eval_s=0.01, decode_s=0.5)  # fmt: skip
    last = accept.stats(suggestion(result=result, latency_s=0.25), info, "ready", 3, 10)
    assert (last["model"], last["supersededRequests"]) == ("gemma", 3)
    assert last["last"] | {"id": None} == {
        "id": None, "mode": "line", "latencyMs": 250.0, "cached": False, "promptTokens": 9, "reusedTokens": 5,
        "evaluatedTokens": 4, "generatedTokens": 4, "promptEvalMs": 10.0, "decodeMs": 500.0, "decodeTokensPerS": 8.0,
    }  # fmt: skip


def test_stats_request_answers_on_the_wire(server: GhostpilotServer) -> None:
    wire = Wire(server)
    initialize(server)
    server.protocol.handle_payload({"jsonrpc": "2.0", "id": 2, "method": accept.STATS})  # type: ignore[attr-defined]
    [answer] = [m for m in wire.sent if m.get("id") == 2]
    assert answer["result"]["modelState"] == server.worker.state and answer["result"]["rssBytes"] > 0


# -- completion (the fallback) -----------------------------------------------------------------

INLINE = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(inline_completion=types.InlineCompletionClientCapabilities())
)
MARKDOWN = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        completion=types.CompletionClientCapabilities(
            completion_item=types.ClientCompletionItemOptions(documentation_format=[types.MarkupKind.Markdown])
        )
    )
)


@pytest.mark.parametrize(
    ("mode", "capabilities", "expected"),
    [
        pytest.param("auto", types.ClientCapabilities(), True, id="auto-without-inline"),
        pytest.param("auto", INLINE, False, id="auto-with-inline"),
        pytest.param("always", INLINE, True, id="always"),
        pytest.param("never", types.ClientCapabilities(), False, id="never"),
    ],
)
def test_wants_fallback(mode: str, capabilities: types.ClientCapabilities, expected: bool) -> None:
    assert completion.wants_fallback(mode, capabilities) is expected


@pytest.mark.parametrize(
    ("text", "label"),
    [
        pytest.param("return sum(xs)", "Ghostpilot AI: return sum(xs)", id="one-line"),
        pytest.param("\n    if not xs:\n        return 0", "Ghostpilot AI: if not xs:", id="first-non-blank-line"),
        pytest.param("x = " + "1" * 80, "Ghostpilot AI: x = " + "1" * 53 + "...", id="long-cut-at-60"),
    ],
)
def test_item_for(text: str, label: str) -> None:
    document = Document(uri=URI, text=TEXT)
    made = suggestion(text=text)
    item = completion.item_for(document, made, markdown=False)
    assert item.label == label and item.sort_text == "\uffff" and item.documentation == text
    assert item.text_edit == types.TextEdit(range=_common.to_range(document, 18, 18), new_text=text)
    assert item.command == _common.accept_command(made.id)
    markdown = completion.item_for(document, made, markdown=True).documentation
    assert isinstance(markdown, types.MarkupContent) and markdown.value == f"```python\n{text}\n```"


async def test_completion_handler(live: GhostpilotServer) -> None:
    initialize(live, capabilities=json.loads(json.dumps(live.protocol._converter.unstructure(MARKDOWN))))  # type: ignore[attr-defined]
    made = suggestion()
    engine = with_engine(live, made)
    live.documents.open(URI, TEXT, 1, "python")
    handler = live.protocol.fm.features[types.TEXT_DOCUMENT_COMPLETION]
    params = types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=CURSOR,
        context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
    )  # fmt: skip
    found = await handler(params)
    assert found.is_incomplete and [i.label for i in found.items] == ["Ghostpilot AI: return sum(xs) / len(xs)"]
    assert isinstance(found.items[0].documentation, types.MarkupContent)
    assert engine.calls == [(URI, 18, True)]
    live.settings = configuration_merge(live, {"completionFallback": "never"})
    assert await handler(params) == types.CompletionList(is_incomplete=False, items=[])
    assert len(engine.calls) == 1


def configuration_merge(server: GhostpilotServer, raw: dict[str, Any]) -> Any:
    from lsp_server.config import merge

    settings, problems = merge(server.settings, raw)
    assert problems == []
    return settings


# -- configuration -----------------------------------------------------------------------------


def test_initialize_applies_initialization_options_and_the_encoding(server: GhostpilotServer) -> None:
    Wire(server)
    initialize(server, capabilities={"general": {"positionEncodings": ["utf-8"]}}, initializationOptions={"maxTokens": 7})
    assert server.settings.max_tokens == 7
    assert server.documents.encoding == "utf-8"


def test_a_client_that_names_no_encoding_gets_utf16_by_its_name(server: GhostpilotServer) -> None:
    """pygls' default is an enum member, whose str() read "PositionEncodingKind.Utf16"
    in error messages (positions were still read as UTF-16: the default branch)."""
    Wire(server)
    initialize(server, capabilities={})
    assert server.documents.encoding == "utf-16" and type(server.documents.encoding) is str


async def test_initialized_loads_the_model_pulls_settings_and_calls_the_listeners(live: GhostpilotServer) -> None:
    wire = Wire(live)
    initialize(live, capabilities={"workspace": {"configuration": True}})
    loads: list[str] = []
    live.start_model_load = lambda: loads.append(live.settings.model)  # type: ignore[method-assign]
    heard: list[GhostpilotServer] = []

    async def listener(ls: GhostpilotServer) -> None:
        heard.append(ls)

    live.initialized_listeners.append(listener)
    handler = live.protocol.fm.features[types.INITIALIZED]
    task = asyncio.ensure_future(handler(types.InitializedParams()))
    await settle()
    [request] = wire.requests("workspace/configuration")
    assert request["params"] == {"items": [{"section": "ghostpilot"}]}
    live.protocol.handle_payload({"jsonrpc": "2.0", "id": request["id"], "result": [{"maxTokens": 11}]})  # type: ignore[attr-defined]
    await task
    assert loads == [DEFAULT_MODEL] and live.settings.max_tokens == 11 and heard == [live]


async def test_pull_configuration_keeps_the_settings_when_the_client_fails(live: GhostpilotServer) -> None:
    wire = Wire(live)
    initialize(live, capabilities={"workspace": {"configuration": True}})
    before = live.settings
    task = asyncio.ensure_future(configuration.pull_configuration(live))
    await settle()
    [request] = wire.requests("workspace/configuration")
    live.protocol.handle_payload(  # type: ignore[attr-defined]
        {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32603, "message": "no"}}
    )
    await task
    assert live.settings is before


async def test_did_change_configuration_merges_a_dict_and_pulls_otherwise(live: GhostpilotServer) -> None:
    wire = Wire(live)
    initialize(live, capabilities={"workspace": {"configuration": True}})
    handler = live.protocol.fm.features[types.WORKSPACE_DID_CHANGE_CONFIGURATION]
    await handler(types.DidChangeConfigurationParams(settings={"maxTokens": 9}))
    assert live.settings.max_tokens == 9 and wire.requests("workspace/configuration") == []
    task = asyncio.ensure_future(handler(types.DidChangeConfigurationParams(settings=None)))
    await settle()
    [request] = wire.requests("workspace/configuration")
    live.protocol.handle_payload({"jsonrpc": "2.0", "id": request["id"], "result": [{"maxTokens": 12}]})  # type: ignore[attr-defined]
    await task
    assert live.settings.max_tokens == 12


def test_shutdown_calls_every_listener_then_stops_the_worker(server: GhostpilotServer) -> None:
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise OSError("disk full")

    server.shutdown_listeners[:] = [broken, lambda: calls.append("saved")]
    server.worker.shutdown = lambda: calls.append("worker")  # type: ignore[method-assign]
    reported: list[str] = []
    server.report_error = lambda key, message, level=None: reported.append(message)  # type: ignore[method-assign]
    server.protocol.fm.features[types.SHUTDOWN]()
    assert calls == ["broken", "saved", "worker"]
    assert reported == ["shutting down a feature failed: disk full"]


# -- code actions: every provider's, a failing one reported ------------------------------------


async def test_code_actions_gather_every_provider_and_survive_a_failing_one(live: GhostpilotServer) -> None:
    wire = Wire(live)
    initialize(live)
    action = types.CodeAction(title="from a provider")

    async def async_provider(ls: GhostpilotServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        return [action]

    def broken(ls: GhostpilotServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        raise KeyError("x")

    live.code_action_providers[:] = [broken, async_provider, lambda ls, params: None]
    handler = live.protocol.fm.features[types.TEXT_DOCUMENT_CODE_ACTION]
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), range=types.Range(start=CURSOR, end=CURSOR),
        context=types.CodeActionContext(diagnostics=[]),
    )  # fmt: skip
    assert await handler(params) == [action]
    await settle()
    assert wire.shown() == ["Ghostpilot: code actions failed: 'x'"]
    live.code_action_providers[:] = [lambda ls, params: None]
    assert await handler(params) is None


# -- the server's helpers ----------------------------------------------------------------------


async def test_call_listeners_runs_them_in_order_awaiting_each(server: GhostpilotServer) -> None:
    order: list[str] = []

    async def slow(value: int) -> int:
        order.append("slow-start")
        await asyncio.sleep(0.01)
        order.append("slow-end")
        return value * 2

    def failing(value: int) -> int:
        raise ValueError("bad")

    async def failing_later(value: int) -> int:
        raise ValueError("later")

    def quick(value: int) -> int:
        order.append("quick")
        return value

    reported: list[str] = []
    server.report_error = lambda key, message, level=None: reported.append(message)  # type: ignore[method-assign]
    results = await server.call_listeners([slow, failing, failing_later, quick], 3, failure="a hook failed")
    assert results == [6, 3]
    assert order == ["slow-start", "slow-end", "quick"]
    assert reported == ["a hook failed: bad", "a hook failed: later"]
    assert server.call_each([quick, failing], 1) == [1]


@pytest.mark.parametrize(
    ("capabilities", "refuse", "shown"),
    [
        pytest.param({"window": {"workDoneProgress": True}}, False, True, id="supported"),
        pytest.param({}, False, False, id="not-supported"),
        pytest.param({"window": {"workDoneProgress": True}}, True, False, id="refused"),
    ],
)
async def test_progress(live: GhostpilotServer, capabilities: dict[str, Any], refuse: bool, shown: bool) -> None:
    wire = Wire(live)
    initialize(live, capabilities=capabilities)
    cancelled: list[bool] = []
    progress = Progress(live, "Ghostpilot: work", kind="unit", cancellable=True, on_cancel=lambda: cancelled.append(True))
    begun = asyncio.ensure_future(progress.begin("starting", percentage=0))
    await settle()
    for request in wire.requests("window/workDoneProgress/create"):
        answer = {"error": {"code": -32603, "message": "no"}} if refuse else {"result": None}
        live.protocol.handle_payload({"jsonrpc": "2.0", "id": request["id"], **answer})  # type: ignore[attr-defined]
    assert await begun is shown
    progress.report("half", 50)
    if shown:  # the client's cancel button
        live.protocol.handle_payload({  # type: ignore[attr-defined]
            "jsonrpc": "2.0", "method": "window/workDoneProgress/cancel", "params": {"token": progress.token},
        })  # fmt: skip
        await settle()
    progress.end("done")
    progress.end("twice")  # ends once
    values = [p["value"] for p in wire.notifications("$/progress")]
    if shown:
        assert [v["kind"] for v in values] == ["begin", "report", "end"]
        assert values[0] == {"kind": "begin", "title": "Ghostpilot: work", "message": "starting", "cancellable": True, "percentage": 0}
        assert values[1] == {"kind": "report", "message": "half", "percentage": 50}
        assert cancelled == [True] and progress.token not in live.work_done_progress.tokens
    else:
        assert values == [] and cancelled == []


def test_status_states_are_the_documented_ones() -> None:
    assert STATUS_STATES == {"loading", "ready", "generating", "error", "disabled"}
    assert set(typing.get_args(typing.get_type_hints(GhostpilotServer.send_status)["state"])) == STATUS_STATES


async def test_model_states_reach_the_status_bar(live: GhostpilotServer) -> None:
    wire = Wire(live)
    live._on_model_state("loading", "loading gemma")
    live._on_model_state("unloaded", "")  # not a status: not sent
    await settle()
    assert [(s["state"], s["message"]) for s in wire.notifications("ghostpilot/status")] == [("loading", "loading gemma")]

