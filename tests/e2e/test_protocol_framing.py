"""End-to-end: the real ``python -m lsp_server serve`` survives bad frames, over stdio and
``--tcp``. Each bad frame is followed by a valid request, which must be answered; what was
in the bad frame is either read anyway (a wrong length) or answered with a ParseError
(``"id": null``); and stdout carries nothing but JSON-RPC.

Before this was fixed (pygls' reader), a huge Content-Length killed the server with
MemoryError, and every other kind in BAD_FRAMES but the extra headers left it deaf to all
later messages."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.protocol_client import RawServer, frame, notification, request

pytestmark = [pytest.mark.e2e]

PARSE_ERROR = -32700
READ = "read"  # the bad frame's request is read and answered anyway
DROPPED = "dropped"  # it gets a ParseError with id null


def stats(msg_id: int) -> bytes:
    return json.dumps(request(msg_id, "ghostpilot/stats", {})).encode()


# (how to frame the body, what happens to it)
BAD_FRAMES = [
    pytest.param(lambda b: frame(b, "content-length: {n}\r\n\r\n"), READ, id="lower-case-name"),
    pytest.param(lambda b: frame(b, "Content-Length:{n}\r\n\r\n"), READ, id="no-space"),
    pytest.param(lambda b: frame(b, "Content-Length: {n}\n\n"), READ, id="lf-only"),
    pytest.param(lambda b: frame(b, "Content-Type: application/vscode-jsonrpc\r\nX-Other: 1\r\nContent-Length: {n}\r\n\r\n"), READ, id="extra-headers"),
    pytest.param(lambda b: f"Content-Length: {len(b) + 50}\r\n\r\n".encode() + b, READ, id="length-too-long"),
    pytest.param(lambda b: f"Content-Length: {len(b) - 9}\r\n\r\n".encode() + b, READ, id="length-too-short"),
    pytest.param(lambda b: b"Content-Length: -12\r\n\r\n" + b, READ, id="negative-length"),
    pytest.param(lambda b: b"Content-Length: 0\r\n\r\n" + b, READ, id="zero-length"),
    pytest.param(lambda b: b"Content-Length: twelve\r\n\r\n" + b, READ, id="non-numeric-length"),
    pytest.param(lambda b: b"Content-Type: application/vscode-jsonrpc\r\n\r\n" + b, READ, id="no-length"),
    pytest.param(lambda b: b"Content-Length: 99999999999999\r\n\r\n" + b, DROPPED, id="huge-length"),
    pytest.param(lambda b: f"Content-Length: {65 * 2**20}\r\n\r\n".encode() + b, DROPPED, id="over-the-64-MiB-cap"),
    pytest.param(lambda b: frame(b[: len(b) // 2]), DROPPED, id="invalid-json"),
    pytest.param(lambda b: frame(b"\xff\xfe" + b), DROPPED, id="not-utf8"),
    pytest.param(lambda b: b"hello\r\n" + frame(b), READ, id="junk-line-before"),
    pytest.param(lambda b: b + b"\r\n", DROPPED, id="json-without-header"),
    pytest.param(lambda b: f"Content-Length: {len(b)}\r\n".encode() + b, DROPPED, id="no-blank-line"),
    pytest.param(lambda b: b"X-Pad: " + b"a" * 10_000 + b"\r\n\r\n" + b, DROPPED, id="header-too-long"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[RawServer]:
    server = RawServer()
    server.initialize(initialized=False)  # no model load: framing never reaches it
    yield server
    server.stop()


@pytest.mark.parametrize(("bad", "outcome"), BAD_FRAMES)
def test_bad_frame_then_a_valid_request_is_answered(server: RawServer, bad, outcome: str) -> None:  # type: ignore[no-untyped-def]
    bad_id, good_id = server.new_id(), server.new_id()
    nulls = len(server.responses(None))
    server.send_bytes(bad(stats(bad_id)) + frame(stats(good_id)))
    assert "result" in server.response(good_id, timeout=30)
    if outcome == READ:
        assert len(server.responses(bad_id)) == 1 and "result" in server.responses(bad_id)[0]
    else:
        assert server.responses(bad_id) == []
        new_nulls = server.responses(None)[nulls:]
        assert [m["error"]["code"] for m in new_nulls] == [PARSE_ERROR], new_nulls
    assert server.process.poll() is None
    assert server.stdout_problems == []


def test_length_too_long_with_nothing_after_is_answered_when_the_client_waits(server: RawServer) -> None:
    msg_id = server.new_id()
    body = stats(msg_id)
    server.send_bytes(f"Content-Length: {len(body) + 100}\r\n\r\n".encode() + body)
    assert "result" in server.response(msg_id, timeout=30)


def test_frame_problems_are_shown_once_per_cause(server: RawServer) -> None:
    for _ in range(3):
        server.send_bytes(b"Content-Length: 99999999999999\r\n\r\n{}")
    server.sync()
    shown = [m["params"]["message"] for m in server.notifications("window/showMessage")]
    huge = [m for m in shown if "99999999999999" in m]
    assert len(huge) == 1 and "--max-message-mb" in huge[0], shown


def test_huge_content_length_does_not_raise_rss() -> None:
    server = RawServer()
    try:
        server.initialize(initialized=False)
        server.sync()
        before = server.rss_kib()
        msg_id = server.new_id()
        server.send_bytes(b"Content-Length: 99999999999999\r\n\r\n" + b"x" * 4 * 2**20 + frame(stats(msg_id)))
        assert "result" in server.response(msg_id, timeout=60)
        after = server.rss_kib()
        print(f"RSS before {before / 1024:.1f} MiB, after a 99999999999999-byte Content-Length "
              f"and 4 MiB of its body: {after / 1024:.1f} MiB (+{(after - before) / 1024:.1f} MiB)")
        assert after - before < 32 * 1024
        assert server.stdout_problems == []
    finally:
        server.stop()


def test_tcp_reads_leniently_too() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = RawServer("--tcp", f"127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline and server.process.poll() is None, server.stderr_text()
                time.sleep(0.2)
        with connection:
            init = json.dumps(request(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})).encode()
            connection.sendall(b"Content-Length: 99999999999999\r\n\r\n{}" + frame(init, "content-length:{n}\n\n"))
            replies = _read_frames(connection, until_id=1)
            assert [m.get("id") for m in replies].count(1) == 1
            assert any(m.get("id") is None and m["error"]["code"] == PARSE_ERROR for m in replies)
            connection.sendall(frame(request(2, "shutdown")) + frame(notification("exit", None)))
            assert any(m.get("id") == 2 for m in _read_frames(connection, until_id=2))
        assert server.wait_exit() == 0
    finally:
        server.stop()


def _read_frames(connection: socket.socket, until_id: int) -> list[dict]:  # type: ignore[type-arg]
    """Frames from the server (strictly framed) until the response with ``until_id``."""
    data = b""
    messages: list[dict] = []  # type: ignore[type-arg]
    while not any(m.get("id") == until_id and "method" not in m for m in messages):
        chunk = connection.recv(65536)
        assert chunk, "connection closed"
        data += chunk
        while b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("ascii").split("\r\n")
            assert lines[0].startswith("Content-Length: ") and all(
                line.startswith("Content-Type: ") for line in lines[1:]
            ), head
            length = int(lines[0].split(": ")[1])
            if len(rest) < length:
                break
            messages.append(json.loads(rest[:length]))
            data = rest[length:]
    return messages

