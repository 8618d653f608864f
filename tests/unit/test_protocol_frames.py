"""FrameParser: Content-Length framing read leniently, bad frames reported, and reading
resumed at the next header."""

from __future__ import annotations

import json

import pytest

from lsp_server.protocol import (
    HEADER_SCAN_OVERLAP,
    MAX_HEADER_BYTES,
    Dropped,
    FrameEvent,
    FrameParser,
    Received,
)


def body(msg_id: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "ghostpilot/stats", "params": {}}).encode()


def framed(data: bytes, header: str = "Content-Length: {n}\r\n\r\n") -> bytes:
    return header.format(n=len(data)).encode() + data


A, B = body(1), body(2)
GOOD_B = framed(B)


def summary(events: list[FrameEvent]) -> list[tuple[str, object, str | None]]:
    """(kind, message id or drop cause, frame problem cause) for each event."""
    out: list[tuple[str, object, str | None]] = []
    for event in events:
        if isinstance(event, Received):
            out.append(("received", event.payload["id"], event.problem.cause if event.problem else None))
        else:
            out.append(("dropped", event.problem.cause, None))
    return out


def ok(msg_id: int, problem: str | None = None) -> tuple[str, object, str | None]:
    return ("received", msg_id, problem)


def dropped(cause: str) -> tuple[str, object, str | None]:
    return ("dropped", cause, None)


CASES = [
    pytest.param(framed(A), [ok(1)], id="plain"),
    pytest.param(framed(A, "content-length: {n}\r\n\r\n"), [ok(1)], id="lower-case-name"),
    pytest.param(framed(A, "CONTENT-LENGTH: {n}\r\n\r\n"), [ok(1)], id="upper-case-name"),
    pytest.param(framed(A, "Content-Length:{n}\r\n\r\n"), [ok(1)], id="no-space"),
    pytest.param(framed(A, "Content-Length:   {n}  \r\n\r\n"), [ok(1)], id="extra-spaces"),
    pytest.param(framed(A, "Content-Length: {n}\n\n"), [ok(1)], id="lf-only"),
    pytest.param(framed(A, "Content-Length: {n}\r\n\n"), [ok(1)], id="mixed-line-ends"),
    pytest.param(
        framed(A, "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: {n}\r\n\r\n"),
        [ok(1)], id="content-type-first",
    ),
    pytest.param(framed(A, "X-Custom: 1\r\ncontent-length: {n}\r\n\r\n"), [ok(1)], id="unknown-header"),
    pytest.param(b"\r\n\r\n" + framed(A), [ok(1)], id="blank-lines-before"),
    pytest.param(framed(A) + b"\r\n" + GOOD_B, [ok(1), ok(2)], id="blank-line-between"),
    pytest.param(framed(A) + GOOD_B, [ok(1), ok(2)], id="two-in-one-chunk"),
    pytest.param(
        framed(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "m", "params": {"text": "Content-Length: 5\r\n\r\nx"}}).encode())
        + GOOD_B,
        [ok(1), ok(2)], id="header-text-inside-a-string",
    ),
    pytest.param(framed(json.dumps(json.loads(A), indent=2).encode()) + GOOD_B, [ok(1), ok(2)], id="pretty-printed-body"),
    # A wrong length: the body ends at the next header, the message is kept, the problem said.
    pytest.param(framed(A, f"Content-Length: {len(A) + 40}\r\n\r\n") + GOOD_B, [ok(1, "wrong-length"), ok(2)], id="length-too-long"),
    pytest.param(framed(A, f"Content-Length: {len(A) - 10}\r\n\r\n") + GOOD_B, [ok(1, "wrong-length"), ok(2)], id="length-too-short"),
    pytest.param(framed(A, "Content-Length: -5\r\n\r\n") + GOOD_B, [ok(1, "bad-length"), ok(2)], id="negative-length"),
    pytest.param(framed(A, "Content-Length: 0\r\n\r\n") + GOOD_B, [ok(1, "bad-length"), ok(2)], id="zero-length"),
    pytest.param(framed(A, "Content-Length: abc\r\n\r\n") + GOOD_B, [ok(1, "bad-length"), ok(2)], id="non-numeric-length"),
    pytest.param(framed(A, "Content-Length: 1e3\r\n\r\n") + GOOD_B, [ok(1, "bad-length"), ok(2)], id="exponent-length"),
    pytest.param(framed(A, "Content-Type: x\r\n\r\n") + GOOD_B, [ok(1, "bad-length"), ok(2)], id="no-length-header"),
    pytest.param(
        framed(A, "Content-Length: {n}\r\nContent-Length: 3\r\n\r\n") + GOOD_B, [ok(1, "bad-length"), ok(2)],
        id="conflicting-lengths",
    ),
    # What cannot be read is dropped, and reading resumes at the next header.
    pytest.param(framed(A, "Content-Length: 99999999999999\r\n\r\n") + GOOD_B, [dropped("too-large"), ok(2)], id="huge-length"),
    pytest.param(
        framed(A, "Content-Length: 123456789012345678901234567890\r\n\r\n") + GOOD_B, [dropped("too-large"), ok(2)],
        id="length-beyond-int64",
    ),
    pytest.param(framed(b'{"jsonrpc": "2.0", "id": 1, "method": ') + GOOD_B, [dropped("invalid-json"), ok(2)], id="invalid-json"),
    pytest.param(framed(b'\xff\xfe{"jsonrpc": "2.0"}') + GOOD_B, [dropped("invalid-json"), ok(2)], id="not-utf8"),
    pytest.param(framed(b"[" * 100_000) + GOOD_B, [dropped("invalid-json"), ok(2)], id="too-deep"),
    pytest.param(b"hello there\r\n" + GOOD_B, [dropped("junk"), ok(2)], id="junk-line"),
    pytest.param(A + GOOD_B, [dropped("junk"), ok(2)], id="json-without-header"),
    pytest.param(b"Content-Length: 5\r\n" + A + b"\r\n" + GOOD_B, [dropped("junk"), ok(2)], id="no-blank-line"),
    pytest.param(
        b"X-Pad: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n" + GOOD_B, [dropped("header-too-long"), ok(2)],
        id="header-too-long",
    ),
    pytest.param(b"x" * (MAX_HEADER_BYTES + 10) + GOOD_B, [dropped("header-too-long"), ok(2)], id="junk-without-line-end"),
    pytest.param(framed(b"", "Content-Length: 0\r\n\r\n") + GOOD_B, [dropped("bad-length"), ok(2)], id="empty-body"),
]


@pytest.mark.parametrize(("stream", "expected"), CASES)
def test_whole_stream(stream: bytes, expected: list[tuple[str, object, str | None]]) -> None:
    parser = FrameParser()
    assert summary(parser.feed(stream) + parser.close()) == expected


@pytest.mark.parametrize(("stream", "expected"), [c for c in CASES if len(c.values[0]) < 20_000])  # type: ignore[arg-type]
def test_byte_by_byte(stream: bytes, expected: list[tuple[str, object, str | None]]) -> None:
    """The same events whichever way the stream is cut into chunks."""
    parser = FrameParser()
    events: list[FrameEvent] = []
    for i in range(len(stream)):
        events += parser.feed(stream[i : i + 1])
    assert summary(events + parser.close()) == expected


def test_received_payload_is_the_decoded_message() -> None:
    [event] = FrameParser().feed(framed('{"jsonrpc": "2.0", "method": "m", "params": {"t": "é\\u00e9"}}'.encode()))
    assert isinstance(event, Received) and event.payload["params"] == {"t": "éé"}


def test_length_too_long_with_nothing_after_is_taken_when_the_sender_pauses() -> None:
    parser = FrameParser()
    assert parser.feed(framed(A, f"Content-Length: {len(A) + 40}\r\n\r\n")) == []
    assert parser.in_body
    assert summary(parser.stalled()) == [ok(1, "wrong-length")]
    assert summary(parser.feed(GOOD_B)) == [ok(2)]


def test_a_pause_inside_a_body_that_is_not_whole_yet_changes_nothing() -> None:
    parser = FrameParser()
    stream = GOOD_B
    assert parser.feed(stream[:-5]) == []
    assert parser.stalled() == []
    assert summary(parser.feed(stream[-5:])) == [ok(2)]


def test_stream_ending_inside_a_message_is_reported() -> None:
    parser = FrameParser()
    assert parser.feed(GOOD_B[:-5]) == []
    assert summary(parser.close()) == [dropped("truncated")]


def test_huge_length_buffers_nothing_while_it_skips() -> None:
    parser = FrameParser()
    assert summary(parser.feed(b"Content-Length: 99999999999999\r\n\r\n")) == [dropped("too-large")]
    for _ in range(64):
        assert parser.feed(b"x" * 65536) == []
        assert parser.buffered <= HEADER_SCAN_OVERLAP
    assert summary(parser.feed(GOOD_B)) == [ok(2)]


def test_message_over_the_cap_is_dropped_even_without_a_length() -> None:
    parser = FrameParser(max_message_bytes=1000)
    events = parser.feed(b"Content-Length: abc\r\n\r\n" + b"x" * 1500)
    assert summary(events) == [dropped("too-large")]
    assert parser.buffered <= HEADER_SCAN_OVERLAP
    assert summary(parser.feed(GOOD_B)) == [ok(2)]


def test_cap_is_a_parameter() -> None:
    data = framed(b'{"jsonrpc": "2.0", "method": "m", "params": {"t": "' + b"x" * 2000 + b'"}}')
    assert summary(FrameParser(max_message_bytes=1000).feed(data + GOOD_B)) == [dropped("too-large"), ok(2)]
    assert [type(e) for e in FrameParser(max_message_bytes=5000).feed(data)] == [Received]


def test_problem_detail_names_the_declared_and_real_length() -> None:
    [event, _] = FrameParser().feed(framed(A, f"Content-Length: {len(A) + 40}\r\n\r\n") + GOOD_B)
    assert isinstance(event, Received) and event.problem is not None
    assert str(len(A) + 40) in event.problem.detail and str(len(A)) in event.problem.detail


def test_dropped_frames_say_why() -> None:
    [event, _] = FrameParser().feed(framed(A, "Content-Length: 99999999999999\r\n\r\n") + GOOD_B)
    assert isinstance(event, Dropped)
    assert "99999999999999" in event.problem.detail and "--max-message-mb" in event.problem.detail
