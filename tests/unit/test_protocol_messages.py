"""GhostpilotProtocol: every request answered exactly once, bad notifications reported
once per cause, exit codes, and the params reaching the features as the client sent them.
The real server object, driven in-process without a model (none of this reaches it)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from lsprotocol import types

from lsp_server.protocol import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    SERVER_NOT_INITIALIZED,
    Envelope,
    GhostpilotProtocol,
    Rejection,
    check_message,
    describe_error,
    lsp_kind,
)
from lsp_server.server import GhostpilotServer, create_server, error_kind

TD = {"uri": "file:///tmp/protocol-unit.py"}
POS = {"line": 0, "character": 0}


class ListWriter:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.sent.append(json.loads(data))

    def close(self) -> None:
        pass


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> GhostpilotServer:
    """A server before ``initialize``."""
    server = create_server()
    server.protocol.set_writer(ListWriter(), include_headers=False)
    server.reports = []  # type: ignore[attr-defined]
    monkeypatch.setattr(
        server, "report_error", lambda key, message, level=None: server.reports.append((key, message))  # type: ignore[attr-defined]
    )
    return server


@pytest.fixture
def server(fresh: GhostpilotServer) -> GhostpilotServer:
    """A server after ``initialize``, with what it sent so far forgotten."""
    initialize(fresh)
    sent(fresh).clear()
    return fresh


def protocol(server: GhostpilotServer) -> GhostpilotProtocol:
    assert isinstance(server.protocol, GhostpilotProtocol)
    return server.protocol


def sent(server: GhostpilotServer) -> list[dict[str, Any]]:
    writer = server.protocol.writer
    assert isinstance(writer, ListWriter)
    return writer.sent


def responses(server: GhostpilotServer) -> list[dict[str, Any]]:
    return [m for m in sent(server) if "method" not in m]


def req(msg_id: Any, method: Any, params: Any = None, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params, **extra}


def initialize(server: GhostpilotServer) -> None:
    protocol(server).handle_payload(req(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}}))
    assert "result" in responses(server)[-1]


# -- the envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(req(1, "m"), Envelope("request", "m", 1), id="request"),
        pytest.param(req("a", "m"), Envelope("request", "m", "a"), id="string-id"),
        pytest.param({"jsonrpc": "2.0", "method": "m"}, Envelope("notification", "m", None), id="notification"),
        pytest.param({"jsonrpc": "2.0", "id": 4, "result": None}, Envelope("response", None, 4), id="response"),
        pytest.param({"jsonrpc": "2.0", "id": 4, "error": {}}, Envelope("response", None, 4), id="error-response"),
        pytest.param(req({"a": 1}, "m"), Rejection(None, "id must be an integer or a string", True), id="object-id"),
        pytest.param(req([1], "m"), Rejection(None, "id must be an integer or a string", True), id="array-id"),
        pytest.param(req(True, "m"), Rejection(None, "id must be an integer or a string", True), id="bool-id"),
        pytest.param(req(1.5, "m"), Rejection(None, "id must be an integer or a string", True), id="float-id"),
        pytest.param(req(None, "m"), Rejection(None, "id must be an integer or a string", True), id="null-id"),
        pytest.param(req(7, 5), Rejection(7, "method must be a non-empty string", True), id="method-number"),
        pytest.param(req(7, ""), Rejection(7, "method must be a non-empty string", True), id="method-empty"),
        pytest.param(
            {"jsonrpc": "1.0", "id": 8, "method": "m"}, Rejection(8, 'not JSON-RPC 2.0 ("jsonrpc" must be "2.0")', True),
            id="jsonrpc-1.0",
        ),
        pytest.param(
            {"id": 8, "method": "m"}, Rejection(8, 'not JSON-RPC 2.0 ("jsonrpc" must be "2.0")', True), id="no-jsonrpc"
        ),
        pytest.param([req(1, "m")], Rejection(None, "batches are not supported by LSP", True), id="batch"),
        pytest.param([], Rejection(None, "an empty batch", True), id="empty-batch"),
        pytest.param(5, Rejection(None, "a message must be a JSON object", True), id="number"),
        pytest.param(
            {"jsonrpc": "2.0", "id": 3}, Rejection(None, "neither a request, a notification nor a response", True),
            id="id-only",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "id": {}, "result": 1},
            Rejection(None, "a response whose id is not an integer or a string", False), id="response-object-id",
        ),
    ],
)
def test_check_message(payload: Any, expected: Envelope | Rejection) -> None:
    assert check_message(payload) == expected


def test_describe_error_names_the_field_in_lsp_spelling() -> None:
    from pygls.protocol import default_converter

    params = {"textDocument": TD, "position": POS, "context": {"triggerKind": 0}}
    with pytest.raises(Exception) as caught:
        default_converter().structure(req(1, "textDocument/completion", params), types.CompletionRequest)
    detail, fields = describe_error(caught.value)
    assert detail == "invalid value (0 is not a valid CompletionTriggerKind) @ params.context.triggerKind"
    assert fields == "params.context.triggerKind"


# -- requests: exactly one answer ---------------------------------------------------------------

INVALID_PARAMS_REQUESTS = [
    pytest.param("textDocument/completion", {"textDocument": TD, "position": {"line": -1, "character": 0}}, id="negative-line"),
    pytest.param("textDocument/completion", {"textDocument": TD, "position": {"line": 2**63, "character": 0}}, id="line-2^63"),
    pytest.param("textDocument/completion", None, id="null-params"),
    pytest.param("textDocument/completion", 42, id="number-params"),
    pytest.param("textDocument/inlineCompletion", {"textDocument": TD, "position": POS, "context": {"triggerKind": 99}}, id="triggerKind-99"),
    pytest.param("textDocument/codeAction", {"textDocument": TD, "range": {"start": POS}, "context": {"diagnostics": []}}, id="range-without-end"),
]


@pytest.mark.parametrize(("method", "params"), INVALID_PARAMS_REQUESTS)
def test_invalid_params_get_one_invalid_params_answer(server: GhostpilotServer, method: str, params: Any) -> None:
    protocol(server).handle_payload(req(9, method, params))
    [answer] = responses(server)
    assert answer["id"] == 9 and answer["error"]["code"] == INVALID_PARAMS
    assert method in answer["error"]["message"]


def test_request_without_params_gets_invalid_params(server: GhostpilotServer) -> None:
    protocol(server).handle_payload({"jsonrpc": "2.0", "id": 9, "method": "textDocument/completion"})
    [answer] = responses(server)
    assert answer["error"]["code"] == INVALID_PARAMS and "required field missing @ params" in answer["error"]["message"]


def test_unusable_id_gets_invalid_request_with_null_id(server: GhostpilotServer) -> None:
    protocol(server).handle_payload(req({"x": 1}, "textDocument/completion", {"textDocument": TD, "position": POS}))
    assert responses(server) == [
        {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": "Invalid request: id must be an integer or a string"}}
    ]


def test_custom_method_takes_any_params(server: GhostpilotServer) -> None:
    protocol(server).handle_payload({"jsonrpc": "2.0", "id": 5, "method": "ghostpilot/stats", "extra": 1})
    [answer] = responses(server)
    assert answer["id"] == 5 and "result" in answer


def test_requests_after_shutdown_get_invalid_request_and_exit_is_0(server: GhostpilotServer) -> None:
    protocol(server).handle_payload(req(2, "shutdown"))
    assert responses(server)[-1] == {"jsonrpc": "2.0", "id": 2, "result": None}
    protocol(server).handle_payload(req(3, "textDocument/completion", {"textDocument": TD, "position": POS}))
    answer = responses(server)[-1]
    assert answer["id"] == 3 and answer["error"]["code"] == INVALID_REQUEST
    protocol(server).handle_payload({"jsonrpc": "2.0", "method": "exit"})
    assert protocol(server).exit_code == 0


def test_each_kind_of_message_reaches_its_handler(server: GhostpilotServer) -> None:
    """Requests, notifications, responses and error responses (the server's own dispatch
    by kind, without pygls' Protocol checks); after shutdown a notification is dropped."""
    uri = "file:///tmp/kinds.py"
    protocol(server).handle_payload({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
        "textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}})
    assert server.documents.get(uri).text == "x = 1\n"
    protocol(server).handle_payload(req(5, "ghostpilot/document", {"uri": uri}))
    assert responses(server)[-1]["result"]["text"] == "x = 1\n"
    answered = protocol(server).send_request("workspace/configuration", types.ConfigurationParams(items=[]))
    asked = sent(server)[-1]
    protocol(server).handle_payload({"jsonrpc": "2.0", "id": asked["id"], "result": [{"a": 1}]})
    assert list(answered.result(timeout=1)) == [{"a": 1}]
    refused = protocol(server).send_request("workspace/configuration", types.ConfigurationParams(items=[]))
    asked = sent(server)[-1]
    protocol(server).handle_payload(
        {"jsonrpc": "2.0", "id": asked["id"], "error": {"code": -32603, "message": "no"}})
    with pytest.raises(Exception, match="no"):
        refused.result(timeout=1)
    protocol(server).handle_payload(req(6, "shutdown"))
    protocol(server).handle_payload({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
        "textDocument": {"uri": uri, "version": 2},
        "contentChanges": [{"text": "y = 2\n"}]}})
    assert server.documents.get(uri).text == "x = 1\n"


def test_lsp_kind() -> None:
    assert lsp_kind("textDocument/didChange") == "notification"
    assert lsp_kind("exit") == "notification"
    assert lsp_kind("shutdown") == "request"
    assert lsp_kind("textDocument/inlineCompletion") == "request"
    assert lsp_kind("ghostpilot/stats") is None


def test_notification_method_with_an_id_is_handled_and_answered_null(server: GhostpilotServer) -> None:
    uri = "file:///tmp/kinds-with-id.py"
    protocol(server).handle_payload(req(7, "textDocument/didOpen", {
        "textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x = 1\n"}}))
    assert responses(server) == [{"jsonrpc": "2.0", "id": 7, "result": None}]
    assert server.documents.get(uri).text == "x = 1\n"


def test_request_method_without_an_id_is_not_run(server: GhostpilotServer, caplog: pytest.LogCaptureFixture) -> None:
    protocol(server).handle_payload({"jsonrpc": "2.0", "method": "shutdown"})
    assert responses(server) == []
    assert "shutdown from the client was ignored: it is a request, and it came without an id" in caplog.text
    protocol(server).handle_payload(req(8, "ghostpilot/stats", {}))
    [answer] = responses(server)  # not shut down: a request is served
    assert answer["id"] == 8 and "result" in answer, answer


def test_exit_without_shutdown_is_1(server: GhostpilotServer) -> None:
    protocol(server).handle_payload({"jsonrpc": "2.0", "method": "exit"})
    assert protocol(server).exit_code == 1


# -- before initialize: ServerNotInitialized (LSP 3.17, "Initialize Request") -----------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(req(4, "textDocument/completion", {"textDocument": TD, "position": POS}), id="completion"),
        pytest.param(req(4, "ghostpilot/stats"), id="custom-request"),
        pytest.param(req(4, "shutdown"), id="shutdown"),
        pytest.param(req(4, "workspace/executeCommand", {"command": "ghostpilot.accept", "arguments": ["x"]}), id="command"),
        pytest.param(req(4, "textDocument/completion", None), id="invalid-params-too"),
    ],
)
def test_requests_before_initialize_get_server_not_initialized(fresh: GhostpilotServer, message: dict[str, Any]) -> None:
    protocol(fresh).handle_payload(message)
    [answer] = responses(fresh)
    assert answer["id"] == 4 and answer["error"]["code"] == SERVER_NOT_INITIALIZED == -32002
    assert message["method"] in answer["error"]["message"]
    assert not protocol(fresh)._shutdown  # nothing ran


def test_notifications_before_initialize_are_dropped_and_exit_still_exits(fresh: GhostpilotServer) -> None:
    protocol(fresh).handle_payload({
        "jsonrpc": "2.0", "method": "textDocument/didOpen",
        "params": {"textDocument": {**TD, "languageId": "python", "version": 1, "text": "x = 1\n"}},
    })  # fmt: skip
    assert sent(fresh) == [] and TD["uri"] not in fresh.documents
    protocol(fresh).handle_payload({"jsonrpc": "2.0", "method": "exit"})
    assert protocol(fresh).exit_code == 1


def test_a_bad_initialize_does_not_initialize_and_a_good_one_does(fresh: GhostpilotServer) -> None:
    protocol(fresh).handle_payload(req(1, "initialize", {"processId": None, "rootUri": None}))
    assert responses(fresh)[-1]["error"]["code"] == INVALID_PARAMS
    protocol(fresh).handle_payload(req(2, "ghostpilot/stats"))
    assert responses(fresh)[-1]["error"]["code"] == SERVER_NOT_INITIALIZED
    initialize(fresh)
    protocol(fresh).handle_payload(req(3, "ghostpilot/stats"))
    assert "result" in responses(fresh)[-1]


# -- notifications: never answered, reported once per cause ------------------------------------


def did_change(version: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0", "method": "textDocument/didChange",
        "params": {"textDocument": {"uri": TD["uri"], "version": version}, "contentChanges": [{"text": "x"}]},
    }


def test_invalid_notification_is_reported_once_per_cause_and_never_answered(server: GhostpilotServer) -> None:
    for version in (2**31, 2**31 + 1, 2**40):
        protocol(server).handle_payload(did_change(version))
    assert responses(server) == []
    keys = {key for key, _ in server.reports}  # type: ignore[attr-defined]
    assert len(server.reports) == 3 and len(keys) == 1, server.reports  # type: ignore[attr-defined]
    [(key, message)] = server.reports[:1]  # type: ignore[attr-defined]
    assert "textDocument/didChange" in message and "ignored" in message and "params.textDocument" in message


def test_invalid_response_fails_the_pending_request_instead_of_leaving_it_waiting(server: GhostpilotServer) -> None:
    future = protocol(server).send_request(types.WORKSPACE_CONFIGURATION, types.ConfigurationParams(items=[]))
    [outgoing] = sent(server)
    protocol(server).handle_payload({"jsonrpc": "2.0", "id": outgoing["id"], "result": 5})
    assert future.done() and future.exception() is not None
    assert "invalid response" in str(future.exception())


# -- pygls keeps no copy of the documents and leaves the params alone ----------------------------


def test_document_sync_params_reach_the_feature_as_sent(server: GhostpilotServer) -> None:
    assert not GhostpilotProtocol.NOT_BUILTIN & set(protocol(server).fm.builtin_features)
    seen: list[Any] = []
    features = protocol(server).fm.features
    handler = features[types.TEXT_DOCUMENT_DID_CHANGE]

    def recorder(params: Any) -> Any:
        seen.append(copy.deepcopy(params))
        return handler(params)

    features[types.TEXT_DOCUMENT_DID_CHANGE] = recorder
    protocol(server).handle_payload({
        "jsonrpc": "2.0", "method": "textDocument/didOpen",
        "params": {"textDocument": {**TD, "languageId": "python", "version": 1, "text": "abc"}},
    })  # fmt: skip
    protocol(server).handle_payload({
        "jsonrpc": "2.0", "method": "textDocument/didChange",
        "params": {
            "textDocument": {**TD, "version": 2},
            "contentChanges": [{"range": {"start": {"line": 0, "character": 10}, "end": {"line": 0, "character": 10}}, "text": "X"}],
        },
    })  # fmt: skip
    [params] = seen
    assert params.content_changes[0].range.start.character == 10  # pygls clamped it to 2 in place
    assert protocol(server).workspace.text_documents == {}
    assert server.documents.get(TD["uri"]).version == 2


def test_error_kind_is_the_same_for_every_uri() -> None:
    assert error_kind(KeyError("file:///a.py")) == error_kind(KeyError("file:///b/c.py"))
    assert error_kind(ValueError("line 3")) == error_kind(ValueError("line 40"))
    assert error_kind(KeyError("x")) != error_kind(ValueError("x"))


def test_serve_default_message_cap_is_the_protocol_default() -> None:
    from lsp_server.cli.serve import DEFAULT_MAX_MESSAGE_MB
    from lsp_server.protocol import DEFAULT_MAX_MESSAGE_BYTES

    assert DEFAULT_MAX_MESSAGE_MB * 2**20 == DEFAULT_MAX_MESSAGE_BYTES


# -- a request is read against the text it was sent for --------------------------------------------


async def test_a_request_reads_the_document_before_a_change_sent_after_it_in_the_same_read(
    server: GhostpilotServer,
) -> None:
    """A request and a later didChange that arrive in one read: the request's handler takes
    its first step (document and position) before the change is applied."""
    from lsp_server.protocol import Received

    protocol(server).handle_payload({
        "jsonrpc": "2.0", "method": "textDocument/didOpen",
        "params": {"textDocument": {**TD, "languageId": "python", "version": 1, "text": "abc\n"}},
    })  # fmt: skip
    seen: list[str] = []
    method = "test/readDocument"

    @server.feature(method)
    async def read_document(ls: GhostpilotServer, params: Any) -> None:
        seen.append(ls.documents.get(TD["uri"]).text)

    insert = {
        "jsonrpc": "2.0", "method": "textDocument/didChange",
        "params": {
            "textDocument": {**TD, "version": 2},
            "contentChanges": [{"range": {"start": POS, "end": POS}, "text": "x = 1\n" * 30}],
        },
    }  # fmt: skip
    await protocol(server)._dispatch([Received(req(9, method, {}), None), Received(insert, None)])
    assert seen == ["abc\n"]
    assert server.documents.get(TD["uri"]).text.startswith("x = 1\n")


def test_an_invalid_did_change_puts_the_document_out_of_sync(server: GhostpilotServer) -> None:
    protocol(server).handle_payload({
        "jsonrpc": "2.0", "method": "textDocument/didOpen",
        "params": {"textDocument": {**TD, "languageId": "python", "version": 1, "text": "abc"}},
    })  # fmt: skip
    assert server.documents.out_of_sync(TD["uri"]) is None
    protocol(server).handle_payload(did_change(2**31))
    reason = server.documents.out_of_sync(TD["uri"])
    assert reason is not None and "invalid" in reason


def test_a_request_answered_with_an_error_is_logged_once_without_a_traceback(caplog) -> None:  # type: ignore[no-untyped-def]
    """pygls logged every error answer (a position past the end, sent by a client) with
    ERROR and a traceback, beside the server's own one-line "request failed"; found by
    a hostile-traffic fuzz, whose server logs held 12-21 tracebacks and no fault."""
    import logging

    from pygls.exceptions import JsonRpcInvalidParams

    from lsp_server.cli.serve import AnsweredErrorFilter, configure_logging

    configure_logging("INFO", None)
    rpc = logging.getLogger("pygls.protocol.json_rpc")
    assert sum(isinstance(f, AnsweredErrorFilter) for f in rpc.filters) == 1
    configure_logging("INFO", None)  # again (tests, a second server): still one filter
    assert sum(isinstance(f, AnsweredErrorFilter) for f in rpc.filters) == 1
    with caplog.at_level(logging.INFO):
        for error in (JsonRpcInvalidParams("line 9 is past the end"), RuntimeError("a bug")):
            try:
                raise error
            except Exception:
                rpc.exception('Exception occurred for message "5"')
    logged = [r for r in caplog.records if r.name == "pygls.protocol.json_rpc"]
    assert [type(r.exc_info[1]).__name__ for r in logged if r.exc_info] == ["RuntimeError"]


def test_a_plain_notification_handler_is_called_directly_and_its_failure_reported(
    server: GhostpilotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain function's notification runs without pygls' future and uuid4 (a urandom
    system call a keystroke); a failure in it is reported as pygls reports one, once per
    cause, and later notifications still run."""
    import uuid

    calls: list[Any] = []

    @server.feature("ghostpilot/unitNotice")
    def notice(ls: GhostpilotServer, params: Any) -> None:
        calls.append(params)
        if getattr(params, "fail", False):
            raise ValueError("broken notice")

    def no_uuid() -> None:
        raise AssertionError("the direct path makes no uuid")

    monkeypatch.setattr(uuid, "uuid4", no_uuid)
    for fail in (True, True, False):
        protocol(server).handle_payload({"jsonrpc": "2.0", "method": "ghostpilot/unitNotice", "params": {"fail": fail}})
    assert len(calls) == 3
    assert responses(server) == []
    keys = {key for key, _ in server.reports}  # type: ignore[attr-defined]
    assert len(server.reports) == 2 and len(keys) == 1, server.reports  # type: ignore[attr-defined]
    assert "broken notice" in server.reports[0][1]  # type: ignore[attr-defined]
