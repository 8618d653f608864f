"""End-to-end: every request to the real ``python -m lsp_server serve`` gets exactly one
answer, whatever its params or id; bad notifications are reported once per cause; exit
codes follow LSP; and stdout carries nothing but JSON-RPC throughout.

Before this was fixed, pygls logged ``ClassValidationError`` and dropped each request of
REQUESTS whose params did not validate, and every one of INVALID_ENVELOPES."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.protocol_client import RawServer, notification, request

pytestmark = [pytest.mark.e2e]

INVALID_PARAMS = -32602
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
ANY = "any"  # answered once; what the answer says is the feature's business

URI = "file:///tmp/ghostpilot-e2e/protocol_requests.py"
TEXT = 'def greet(name: str) -> str:\n    """Return a greeting for name."""\n    '
TD = {"uri": URI}
POS = {"line": 2, "character": 4}
MISSING = object()


def position(line: Any, character: Any) -> dict[str, Any]:
    return {"textDocument": TD, "position": {"line": line, "character": character}}


# (method, params or MISSING, the expected error code or ANY). The first group is what
# pygls dropped unanswered; the second it answered, and must still answer exactly once.
REQUESTS = [
    pytest.param("initialize", {"processId": None, "rootUri": None}, INVALID_PARAMS, id="initialize-without-capabilities"),
    pytest.param("textDocument/completion", position(-1, 0), INVALID_PARAMS, id="negative-line"),
    pytest.param("textDocument/completion", position(2**63, 0), INVALID_PARAMS, id="line-2^63"),
    pytest.param("textDocument/completion", position(2**31, 0), INVALID_PARAMS, id="line-2^31"),
    pytest.param("textDocument/completion", position(0, -1), INVALID_PARAMS, id="negative-character"),
    pytest.param("textDocument/completion", {"textDocument": TD, "position": {"line": 0}}, INVALID_PARAMS, id="position-without-character"),
    pytest.param("textDocument/completion", None, INVALID_PARAMS, id="null-params"),
    pytest.param("textDocument/completion", MISSING, INVALID_PARAMS, id="no-params"),
    pytest.param("textDocument/completion", [], INVALID_PARAMS, id="array-params"),
    pytest.param("textDocument/completion", 42, INVALID_PARAMS, id="number-params"),
    pytest.param("textDocument/completion", "x", INVALID_PARAMS, id="string-params"),
    pytest.param("textDocument/completion", {"position": POS}, INVALID_PARAMS, id="no-textDocument"),
    pytest.param("textDocument/completion", {**position(2, 4), "context": {"triggerKind": 0}}, INVALID_PARAMS, id="completion-triggerKind-0"),
    pytest.param("textDocument/inlineCompletion", {**position(2, 4), "context": {"triggerKind": 99}}, INVALID_PARAMS, id="inline-triggerKind-99"),
    pytest.param("textDocument/inlineCompletion", position(2, 4), INVALID_PARAMS, id="inline-without-context"),
    pytest.param("textDocument/inlineCompletion", {**position(None, None), "context": {"triggerKind": 1}}, INVALID_PARAMS, id="inline-null-position"),
    pytest.param("textDocument/inlineCompletion", None, INVALID_PARAMS, id="inline-null-params"),
    pytest.param("textDocument/codeAction", {"textDocument": TD, "range": {"start": POS}, "context": {"diagnostics": []}}, INVALID_PARAMS, id="codeAction-range-without-end"),
    pytest.param("textDocument/codeAction", {"textDocument": TD, "range": {"start": POS, "end": POS}, "context": {"diagnostics": "none"}}, INVALID_PARAMS, id="codeAction-diagnostics-string"),
    pytest.param("textDocument/codeAction", MISSING, INVALID_PARAMS, id="codeAction-no-params"),
    pytest.param("workspace/executeCommand", None, INVALID_PARAMS, id="executeCommand-null-params"),
    pytest.param("textDocument/hover", position(-5, 0), INVALID_PARAMS, id="unserved-method-bad-params"),
    # Answered before too; exactly once still.
    pytest.param("textDocument/completion", position(0.5, 0), ANY, id="fractional-line"),
    pytest.param("textDocument/completion", position("2", 4), ANY, id="string-line"),
    pytest.param("workspace/executeCommand", {"command": "ghostpilot.nope"}, ANY, id="unknown-command"),
    pytest.param("workspace/executeCommand", {"command": "ghostpilot.accept", "arguments": "x"}, ANY, id="arguments-string"),
    pytest.param("textDocument/hover", position(0, 0), METHOD_NOT_FOUND, id="unserved-method"),
    pytest.param("textDocument/completion", position(99, 0), INVALID_PARAMS, id="line-past-the-end"),
    pytest.param("ghostpilot/stats", 5, ANY, id="custom-method-number-params"),
]

# (message, the id the answer must carry): InvalidRequest, and id null where the id itself
# is unusable (JSON-RPC 2.0).
INVALID_ENVELOPES = [
    pytest.param(request({"a": 1}, "textDocument/completion", position(2, 4)), None, id="object-id"),
    pytest.param(request([1], "textDocument/completion", position(2, 4)), None, id="array-id"),
    pytest.param(request(True, "textDocument/completion", position(2, 4)), None, id="bool-id"),
    pytest.param(request(1.5, "textDocument/completion", position(2, 4)), None, id="fractional-id"),
    pytest.param(request(None, "textDocument/completion", position(2, 4)), None, id="null-id"),
    pytest.param({"jsonrpc": "2.0", "id": 9001, "method": 5}, 9001, id="method-number"),
    pytest.param({"jsonrpc": "1.0", "id": 9002, "method": "ghostpilot/stats"}, 9002, id="jsonrpc-1.0"),
    pytest.param({"id": 9003, "method": "ghostpilot/stats"}, 9003, id="no-jsonrpc"),
    pytest.param([request(9004, "ghostpilot/stats", {})], None, id="batch"),
    pytest.param(7, None, id="number"),
    pytest.param({"jsonrpc": "2.0", "id": 9005}, None, id="id-only"),
]


def raw_request(msg_id: int, method: str, params: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not MISSING:
        message["params"] = params
    return message


@pytest.fixture
def server() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.stop()


def test_every_request_is_answered_exactly_once(server: RawServer) -> None:
    # A bad initialize first, while the server is fresh; then the real one.
    ids: list[tuple[int, str, Any]] = []

    def send(case: Any) -> None:
        method, params, expected = case.values
        ids.append((server.new_id(), str(case.id), expected))
        server.send(raw_request(ids[-1][0], method, params))

    send(REQUESTS[0])
    server.initialize(initialized=True)
    server.send(notification("textDocument/didOpen", {"textDocument": {**TD, "languageId": "python", "version": 1, "text": TEXT}}))
    for case in REQUESTS[1:]:
        send(case)
    before_null = len(server.responses(None))
    for message, _ in (case.values for case in INVALID_ENVELOPES):
        server.send(message)  # type: ignore[arg-type]
    server.sync()
    deadline = time.monotonic() + 180  # completions wait for the model: a busy machine is slow
    while time.monotonic() < deadline and any(not server.responses(i) for i, _, _ in ids):
        time.sleep(0.2)

    unanswered = [name for i, name, _ in ids if not server.responses(i)]
    twice = [name for i, name, _ in ids if len(server.responses(i)) > 1]
    print(f"requests: {len(ids)}, unanswered: {len(unanswered)} {unanswered}, answered twice: {twice}")
    assert unanswered == [] and twice == []
    for msg_id, name, expected in ids:
        [answer] = server.responses(msg_id)
        if expected != ANY:
            assert answer.get("error", {}).get("code") == expected, (name, answer)

    # The bad envelopes: InvalidRequest each, with id null where the id was unusable.
    for case in INVALID_ENVELOPES:
        _, answer_id = case.values
        if answer_id is not None:
            [answer] = server.responses(answer_id)
            assert answer["error"]["code"] == INVALID_REQUEST, (case.id, answer)
    nulls = server.responses(None)[before_null:]
    expected_nulls = sum(1 for case in INVALID_ENVELOPES if case.values[1] is None)
    print(f"invalid envelopes: {len(INVALID_ENVELOPES)}, id-null answers: {len(nulls)}")
    assert len(nulls) == expected_nulls and all(m["error"]["code"] == INVALID_REQUEST for m in nulls), nulls

    # Still serving: the real model completes the open document.
    reply = server.call("textDocument/inlineCompletion", {**position(2, 4), "context": {"triggerKind": 1}})
    assert len(reply["result"]["items"]) == 1, reply
    assert server.stdout_problems == []


def test_after_shutdown_requests_get_invalid_request_and_exit_is_0(server: RawServer) -> None:
    server.initialize()
    assert server.call("shutdown") == {"jsonrpc": "2.0", "id": server._next_id, "result": None}
    answer = server.call("textDocument/completion", position(0, 0))
    assert answer["error"]["code"] == INVALID_REQUEST and "after shutdown" in answer["error"]["message"]
    server.send(notification("exit", None))
    assert server.wait_exit() == 0
    assert server.stdout_problems == []


def test_exit_without_shutdown_is_1(server: RawServer) -> None:
    server.initialize()
    server.send(notification("exit", None))
    assert server.wait_exit() == 1
    assert "exit without shutdown" in server.stderr_text()
    assert server.stdout_problems == []


def test_invalid_notification_is_logged_and_shown_once(server: RawServer) -> None:
    server.initialize(capabilities={"window": {"showMessage": {}}})
    server.send(notification("textDocument/didOpen", {"textDocument": {**TD, "languageId": "python", "version": 1, "text": TEXT}}))
    for version in (2**31, 2**31 + 7, 2**40):
        server.send(notification("textDocument/didChange", {
            "textDocument": {**TD, "version": version}, "contentChanges": [{"text": "lost = 1\n"}],
        }))  # fmt: skip
    server.sync()
    logged = [m for m in server.notifications("window/logMessage") if "didChange" in m["params"]["message"]]
    shown = [m for m in server.notifications("window/showMessage") if "didChange" in m["params"]["message"]]
    assert len(logged) == 3, logged
    assert len(shown) == 1, shown
    assert "ignored" in shown[0]["params"]["message"] and "version" in shown[0]["params"]["message"]
    assert server.stdout_problems == []


def test_didchange_for_300_unknown_uris_is_one_message(server: RawServer) -> None:
    server.initialize()
    for i in range(300):
        server.send(notification("textDocument/didChange", {
            "textDocument": {"uri": f"file:///tmp/ghostpilot-e2e/never-opened-{i}.py", "version": 2},
            "contentChanges": [{"text": "x"}],
        }))  # fmt: skip
    server.sync()
    shown = [m["params"]["message"] for m in server.notifications("window/showMessage")]
    print(f"300 didChange for unknown URIs: {len(shown)} message(s) shown")
    assert len(shown) <= 1, shown[:3]
    assert not any("internal error" in m for m in shown), shown[:3]
    assert server.stdout_problems == []


def test_a_message_of_the_wrong_kind_is_answered_or_reported(server: RawServer) -> None:
    """A notification's method with an id (didOpen) is handled as the notification and its
    id answered null; a request's method without an id (completion) is not run, and said
    once. pygls answered the first never and called the second's missing id invalid params."""
    server.initialize(capabilities={"window": {"showMessage": {}}})
    opened = server.call("textDocument/didOpen", {"textDocument": {**TD, "languageId": "python", "version": 1, "text": TEXT}})
    assert opened == {"jsonrpc": "2.0", "id": server._next_id, "result": None}, opened
    for _ in range(2):
        server.send(notification("textDocument/completion", position(2, 4)))
    server.sync()
    shown = [m["params"]["message"] for m in server.notifications("window/showMessage")]
    assert len([m for m in shown if "without an id" in m]) == 1, shown
    assert not any("params are invalid" in m for m in shown), shown
    # The didOpen with an id took effect: the real model completes that document.
    reply = server.call("textDocument/inlineCompletion", {**position(2, 4), "context": {"triggerKind": 1}})
    assert len(reply["result"]["items"]) == 1, reply
    assert server.stdout_problems == []
