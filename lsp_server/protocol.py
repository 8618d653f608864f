"""JSON-RPC framing and message checks for ``ghostpilot serve`` (stdio and ``--tcp``).

pygls 2.x reads a header with one strict pattern (``Content-Length: N\\r\\n`` exactly),
then ``read(N)``, and builds each message inside ``json.loads``. So a lower-case header
name, a missing space or LF-only lines leave it deaf to every later message, a huge N
raises MemoryError, and a request whose params fail validation is logged and never
answered. This module replaces that path:

- ``FrameParser``: bytes in, messages out, no I/O. Header names are case-insensitive, LF
  line ends and a missing space after the colon are accepted. A message larger than
  ``max_message_bytes`` (``DEFAULT_MAX_MESSAGE_BYTES``, 64 MiB; ``ghostpilot serve
  --max-message-mb``) is dropped without being buffered. After a bad frame it picks up
  again at the next ``Content-Length`` header.
- ``check_message``: the JSON-RPC envelope check, a pure function.
- ``GhostpilotProtocol``: answers every request exactly once (InvalidParams,
  InvalidRequest, ParseError as JSON-RPC says), reports a notification it cannot read,
  answers ServerNotInitialized to a request before ``initialize`` (and drops the
  notifications but ``exit``, as LSP says), answers InvalidRequest after ``shutdown``,
  exits with code 1 on ``exit`` without ``shutdown``, and keeps no copy of the documents
  (``DocumentStore`` is the one copy). A notification's method sent with an id is handled
  and its id answered ``null``; a request's method sent without one is reported, not run.
- ``serve_stdio`` / ``serve_tcp``: the read loops.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import cattrs
import cattrs.v
from lsprotocol import types
from pygls.exceptions import FeatureNotificationError, JsonRpcInternalError, JsonRpcMethodNotFound
from pygls.feature_manager import is_thread_function
from pygls.io_ import StdoutWriter
from pygls.protocol import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
    LanguageServerProtocol,
    lsp_method,
)

if TYPE_CHECKING:
    from lsp_server.server import GhostpilotServer

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024
READ_CHUNK = 64 * 1024
# A sender that pauses this long inside a body makes the parser try what arrived as a
# whole message (its Content-Length was too large and nothing follows it yet).
STALL_SECONDS = 0.25

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002

# The start of a header block. Digits then a raw line break: a valid JSON body can hold
# neither outside a string nor (unescaped) inside one, so this never matches inside a
# message, and it marks where the next message starts after a frame whose length was wrong.
HEADER_START = re.compile(
    rb"content-length[ \t]{0,8}:[ \t]{0,8}[0-9]{1,19}[ \t]{0,8}\r?\n", re.IGNORECASE
)
HEADER_SCAN_OVERLAP = 64  # longer than any HEADER_START match
NON_SPACE = re.compile(rb"[^ \t\r\n]")
HEADER_NAME = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


# -- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameProblem:
    cause: str  # a stable key: one message to the user per cause
    detail: str


@dataclass(frozen=True)
class Received:
    """A decoded JSON message; ``problem`` says what was wrong with its frame, if anything."""

    payload: Any
    problem: FrameProblem | None = None


@dataclass(frozen=True)
class Dropped:
    """Bytes that were not a readable message."""

    problem: FrameProblem


FrameEvent = Received | Dropped


class _Invalid:
    pass


INVALID = _Invalid()


def decode_body(body: bytes | bytearray) -> Any:
    """The JSON value in ``body`` (UTF-8), or ``INVALID``."""
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return INVALID


class _State(enum.Enum):
    HEADERS = "headers"
    BODY = "body"
    DISCARD = "discard"  # dropping bytes up to the next header


class FrameParser:
    """Split a byte stream into JSON-RPC messages (``Content-Length`` framing), leniently.

    A body ends at its ``Content-Length`` when the bytes there are whole JSON. When they
    are not, or the length is missing, not a number, zero or negative, the body ends where
    the next header starts (or where the sender pauses, if what arrived is whole JSON):
    the message is kept and the problem reported. What cannot be read is reported as
    ``Dropped``, and reading resumes at the next header.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._state = _State.HEADERS
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._length: int | None = None  # where the body ends, when the header is trusted
        self._declared = ""  # the Content-Length as sent, for messages
        self._problem: FrameProblem | None = None
        self._invalid_at_length = False  # the body at its Content-Length is not JSON
        self._scanned = 0  # body bytes already searched for the next header

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def in_body(self) -> bool:
        """Part of a body has arrived and the rest is awaited."""
        return self._state is _State.BODY and bool(self._buffer)

    def feed(self, data: bytes) -> list[FrameEvent]:
        self._buffer += data
        events: list[FrameEvent] = []
        while self._step(events):
            pass
        return events

    def stalled(self) -> list[FrameEvent]:
        """The sender paused inside a body: take what arrived if it is whole JSON."""
        if not self.in_body:
            return []
        payload = decode_body(self._buffer)
        if payload is INVALID and not (self._invalid_at_length and self._length is not None):
            return []  # not whole yet
        size = len(self._buffer)
        self._buffer.clear()
        if payload is INVALID:  # its Content-Length was right, and it is not JSON
            event: FrameEvent = Dropped(FrameProblem("invalid-json", "a message that is not JSON (UTF-8)"))
        else:
            event = Received(payload, self._problem or self._wrong_length(size))
        self._expect_headers()
        return [event]

    def close(self) -> list[FrameEvent]:
        """The stream ended: a last message if what is left is whole JSON, else ``Dropped``."""
        events = self.stalled()
        pending = self._state is _State.BODY or self._headers or self._buffer.strip()
        if pending and self._state is not _State.DISCARD:
            events.append(Dropped(FrameProblem("truncated", "the stream ended inside a message")))
        self._buffer.clear()
        self._expect_headers()
        return events

    # -- states ------------------------------------------------------------------------------

    def _step(self, events: list[FrameEvent]) -> bool:
        if self._state is _State.HEADERS:
            return self._header_line(events)
        if self._state is _State.BODY:
            return self._body(events)
        return self._discard()

    def _header_line(self, events: list[FrameEvent]) -> bool:
        end = self._buffer.find(b"\n")
        if self._header_bytes + (len(self._buffer) if end < 0 else end) > MAX_HEADER_BYTES:
            self._drop(events, "header-too-long", f"a header block longer than {MAX_HEADER_BYTES} bytes")
            return True
        if end < 0:
            return False
        line = bytes(self._buffer[:end]).rstrip(b"\r")
        if not line.strip():
            del self._buffer[: end + 1]
            if self._headers:  # else a stray blank line between messages
                self._end_of_headers(events)
            return True
        name, colon, value = line.partition(b":")
        if not colon or not HEADER_NAME.fullmatch(name.strip()):
            # Not a header: drop up to the next header (which may start inside this line).
            self._drop(events, "junk", "bytes that are not a message header")
            return True
        self._headers.append((name.strip().lower(), value.strip()))
        self._header_bytes += end + 1
        del self._buffer[: end + 1]
        return True

    def _end_of_headers(self, events: list[FrameEvent]) -> None:
        values = {value for name, value in self._headers if name == b"content-length"}
        self._headers.clear()
        self._header_bytes = 0
        self._state = _State.BODY
        self._length = None
        self._problem = None
        self._invalid_at_length = False
        self._scanned = 0
        self._declared = ""
        if not values:
            self._problem = FrameProblem("bad-length", "a message without a Content-Length header")
            return
        if len(values) > 1:
            shown = ", ".join(sorted(_show(v) for v in values))
            self._problem = FrameProblem("bad-length", f"conflicting Content-Length headers ({shown})")
            return
        text = values.pop()
        self._declared = _show(text)
        if not text.isdigit():
            self._problem = FrameProblem(
                "bad-length", f"Content-Length {self._declared!r} is not a byte count"
            )
        elif len(text) > 19 or int(text) > self.max_message_bytes:
            self._drop(
                events,
                "too-large",
                f"a message of {self._declared} bytes, over the {self.max_message_bytes} byte "
                "limit (ghostpilot serve --max-message-mb)",
            )
        elif int(text) == 0:
            self._problem = FrameProblem("bad-length", "Content-Length 0 (an empty message)")
        else:
            self._length = int(text)

    def _body(self, events: list[FrameEvent]) -> bool:
        buffer = self._buffer
        length = self._length
        if length is not None and len(buffer) >= length:
            if not self._invalid_at_length:
                payload = decode_body(buffer[:length])
                if payload is not INVALID:
                    del buffer[:length]
                    events.append(Received(payload, self._problem))
                    self._expect_headers()
                    return True
                self._invalid_at_length = True
            if NON_SPACE.search(buffer, length) is None:
                return False  # what comes next decides: more of this body, a header, a pause
            self._length = None  # more follows its Content-Length: it ends at the next header
        start = max(0, self._scanned - HEADER_SCAN_OVERLAP)
        self._scanned = len(buffer)
        # A compact JSON body has no raw line break, so most chunks skip the search.
        match = HEADER_START.search(buffer, start) if buffer.find(b"\n", start) >= 0 else None
        if match is not None:
            self._end_body(events, match.start())
            return True
        if len(buffer) > self.max_message_bytes:
            self._drop(
                events,
                "too-large",
                f"a message over the {self.max_message_bytes} byte limit (ghostpilot serve --max-message-mb)",
            )
            return True
        return False

    def _end_body(self, events: list[FrameEvent], end: int) -> None:
        """The next header starts at ``end``: the body is what came before it."""
        payload = decode_body(self._buffer[:end])
        del self._buffer[:end]
        if payload is not INVALID:
            events.append(Received(payload, self._problem or self._wrong_length(end)))
        elif self._problem is not None:
            events.append(Dropped(FrameProblem(self._problem.cause, f"{self._problem.detail}, and not JSON")))
        else:
            events.append(Dropped(FrameProblem("invalid-json", "a message that is not JSON (UTF-8)")))
        self._expect_headers()

    def _wrong_length(self, size: int) -> FrameProblem:
        return FrameProblem(
            "wrong-length", f"Content-Length {self._declared} for a message of {size} bytes"
        )

    def _discard(self) -> bool:
        buffer = self._buffer
        match = HEADER_START.search(buffer) if buffer.find(b"\n") >= 0 else None
        if match is None:
            if len(buffer) > HEADER_SCAN_OVERLAP:
                del buffer[: len(buffer) - HEADER_SCAN_OVERLAP]
            return False
        del buffer[: match.start()]
        self._expect_headers()
        return True

    def _drop(self, events: list[FrameEvent], cause: str, detail: str) -> None:
        events.append(Dropped(FrameProblem(cause, detail)))
        self._headers.clear()
        self._header_bytes = 0
        self._state = _State.DISCARD

    def _expect_headers(self) -> None:
        self._state = _State.HEADERS
        self._headers.clear()
        self._header_bytes = 0
        self._length = None
        self._problem = None
        self._invalid_at_length = False
        self._scanned = 0


def _show(value: bytes) -> str:
    return value[:40].decode("ascii", "replace")


# -- the JSON-RPC envelope -------------------------------------------------------------------


MessageId = int | str


@dataclass(frozen=True)
class Envelope:
    kind: Literal["request", "notification", "response"]
    method: str | None
    id: MessageId | None


@dataclass(frozen=True)
class Rejection:
    """A message that is not valid JSON-RPC. ``answer``: whether it gets an error
    response (with ``id``, which is None where the id itself is unusable)."""

    id: MessageId | None
    message: str
    answer: bool


def valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def check_message(payload: Any) -> Envelope | Rejection:
    """Classify a decoded message, or say why it is not valid JSON-RPC 2.0."""
    if isinstance(payload, list):
        return Rejection(None, "batches are not supported by LSP" if payload else "an empty batch", True)
    if not isinstance(payload, dict):
        return Rejection(None, "a message must be a JSON object", True)
    has_id = "id" in payload
    msg_id = payload.get("id") if valid_id(payload.get("id")) else None
    if "method" not in payload:
        if has_id and ("result" in payload or "error" in payload):
            if msg_id is None:  # a response we cannot match: log it, never answer a response
                return Rejection(None, "a response whose id is not an integer or a string", False)
            return Envelope("response", None, msg_id)
        # Never answer with this id: the client would take it for a reply to its own request.
        return Rejection(None, "neither a request, a notification nor a response", True)
    method = payload["method"]
    if payload.get("jsonrpc") != "2.0":
        return Rejection(msg_id, 'not JSON-RPC 2.0 ("jsonrpc" must be "2.0")', True)
    if not isinstance(method, str) or not method:
        return Rejection(msg_id, "method must be a non-empty string", True)
    if not has_id:
        return Envelope("notification", method, None)
    if msg_id is None:
        return Rejection(None, "id must be an integer or a string", True)
    return Envelope("request", method, msg_id)


def lsp_kind(method: str) -> Literal["request", "notification"] | None:
    """What LSP makes ``method`` (a request or a notification); None for a method it does
    not define (``ghostpilot/stats``): the message's own id says then."""
    found = types.METHOD_TO_TYPES.get(method)
    if found is None:
        return None
    return "notification" if found[1] is None else "request"


def describe_error(error: BaseException) -> tuple[str, str]:
    """(a readable account, the fields at fault without their values) of a structuring
    error, with LSP's camelCase field names: ``0 is not a valid CompletionTriggerKind @
    params.context.triggerKind``."""
    if not isinstance(error, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        return f"{type(error).__name__}: {error}", type(error).__name__
    found: list[tuple[str, str]] = []
    for line in cattrs.transform_error(error, path="$", format_exception=_format_exception):
        text, _, path = line.rpartition(" @ ")
        path = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path.removeprefix("$."))
        found.append((text, path))
    shown = "; ".join(f"{text} @ {path}" for text, path in found[:3])
    if len(found) > 3:
        shown += f"; and {len(found) - 3} more"
    return shown, ",".join(sorted({path for _, path in found}))


def _format_exception(error: BaseException, type_: Any) -> str:
    if isinstance(error, ValueError) and str(error):  # lsprotocol's validators say what is wrong
        return f"invalid value ({error})"
    return cattrs.v.format_exception(error, type_)


def _params_field(payload: dict[str, Any]) -> tuple[str, str] | None:
    """Why ``params`` cannot be structured at all (JSON-RPC allows only an object or array)."""
    if "params" in payload and not isinstance(payload["params"], (dict, list)) and payload["params"] is not None:
        return f"params must be an object, got {type(payload['params']).__name__}", "params"
    return None


# -- the protocol ----------------------------------------------------------------------------


class GhostpilotProtocol(LanguageServerProtocol):
    """pygls' LSP protocol with every request answered once and no copy of the documents."""

    _server: GhostpilotServer

    # pygls' built-in handlers for these keep their own copy of each buffer and clamp a
    # past-the-end ``character`` in place in the params (so Ghostpilot then applied the
    # altered range); they also raise KeyError for a URI that is not open. Without them
    # the features' handlers get the params as the client sent them.
    NOT_BUILTIN = frozenset(
        {types.TEXT_DOCUMENT_DID_OPEN, types.TEXT_DOCUMENT_DID_CHANGE, types.TEXT_DOCUMENT_DID_CLOSE}
    )

    def __init__(self, server: GhostpilotServer, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        self.exit_code: int | None = None  # set by the exit notification
        self.on_exit: Callable[[], None] | None = None
        self.initialize_received = False  # an ``initialize`` request has been dispatched

    def _register_builtin_features(self) -> None:
        super()._register_builtin_features()
        for method in self.NOT_BUILTIN:
            self.fm.builtin_features.pop(method, None)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        """Stop reading and exit: code 0 after ``shutdown``, else 1 (as LSP says)."""
        if (user_handler := self.fm.features.get(types.EXIT)) is not None:
            yield user_handler, args, None
        self.exit_code = 0 if self._shutdown else 1
        if self.exit_code:
            log.warning("exit without shutdown: exiting with code 1")
        if self.on_exit is not None:
            self.on_exit()

    def handle_message(self, message: Any) -> None:
        """pygls' dispatch by kind (request, notification, response, error), telling the
        kinds apart by their fields: pygls' own ``isinstance`` checks against runtime
        Protocols took a fifth of the time a keystroke's didChange costs."""
        if message.jsonrpc != self.VERSION:
            log.warning("unknown message %r", message)
            return
        method = getattr(message, "method", None)
        if self._shutdown and method != types.EXIT:
            log.warning("a message after shutdown: dropped")
            return
        context = contextvars.copy_context()
        if method is not None and hasattr(message, "id"):
            context.run(self._handle_request, message.id, method, message.params)
        elif method is not None:
            context.run(self._handle_notification, method, message.params)
        elif getattr(message, "error", None) is None:
            context.run(self._handle_response, message.id, message.result)
        else:
            context.run(self._handle_response, message.id, None, message.error)

    def _handle_notification(self, method_name: str, params: Any) -> None:
        """A plain function's notification (didChange at every keystroke) is called here
        directly; pygls' way gives each one a future and a uuid4 (a urandom system call)
        that only its error check reads. Errors are reported as pygls reports them."""
        if method_name != types.CANCEL_REQUEST:
            try:
                handler = self._get_handler(method_name)
            except JsonRpcMethodNotFound:
                handler = None
            if handler is not None and not (
                asyncio.iscoroutinefunction(handler)
                or is_thread_function(handler)
                or inspect.isgeneratorfunction(handler)
            ):
                try:
                    handler(params)
                except Exception:
                    error = JsonRpcInternalError.of(sys.exc_info())
                    self._server._report_server_error(error, FeatureNotificationError)
                return
        super()._handle_notification(method_name, params)

    # -- frames and messages -----------------------------------------------------------------

    def handle_event(self, event: FrameEvent) -> None:
        if isinstance(event, Dropped):
            self._report_frame(event.problem, dropped=True)
            self.send_error(None, PARSE_ERROR, f"Parse error: {event.problem.detail}")
            return
        if event.problem is not None:
            self._report_frame(event.problem, dropped=False)
        self.handle_payload(event.payload)

    def handle_payload(self, payload: Any) -> None:
        """Check, structure and dispatch one decoded message; answer what cannot be dispatched."""
        checked = check_message(payload)
        if isinstance(checked, Rejection):
            log.warning("invalid message: %s", checked.message)
            if checked.answer:
                self.send_error(checked.id, INVALID_REQUEST, f"Invalid request: {checked.message}")
            return
        if not self.initialize_received and checked.method not in (types.INITIALIZE, types.EXIT, None):
            self._before_initialize(checked)
            return
        if checked.kind == "request" and self._shutdown and checked.method != types.EXIT:
            self.send_error(
                checked.id, INVALID_REQUEST, f"Invalid request: {checked.method} after shutdown"
            )
            return
        if checked.method is not None and lsp_kind(checked.method) not in (None, checked.kind):
            as_notification = self._wrong_kind(checked)
            if as_notification is None:
                return
            checked = as_notification
            payload = {key: value for key, value in payload.items() if key != "id"}
        try:
            message = self._structure(payload, checked)
        except Exception as error:
            self._invalid_params(checked, error, payload)
            return
        if checked.method == types.INITIALIZE:
            self.initialize_received = True
        self.handle_message(message)

    def _wrong_kind(self, envelope: Envelope) -> Envelope | None:
        """A notification's method sent with an id is handled as the notification, and the
        id answered (``null``) so that the client does not wait for it forever. A request's
        method sent without an id is not run: nothing could carry its answer. Returns the
        envelope to dispatch, if any."""
        method = envelope.method
        if envelope.kind == "request":
            log.warning("%s is a notification, but came with id %r: handled as the notification, "
                        "and the id answered with null", method, envelope.id)
            self._send_data({"jsonrpc": "2.0", "id": envelope.id, "result": None})
            return Envelope("notification", method, None)
        text = f"{method} from the client was ignored: it is a request, and it came without an id"
        log.error("%s", text)
        self._server.report_error(f"request-without-id:{method}", text)
        return None

    def _before_initialize(self, envelope: Envelope) -> None:
        """LSP: a request before ``initialize`` gets ServerNotInitialized; a notification
        (but ``exit``) is dropped."""
        if envelope.kind == "request":
            log.warning("%s (id %r) before initialize: ServerNotInitialized", envelope.method, envelope.id)
            self.send_error(
                envelope.id, SERVER_NOT_INITIALIZED,
                f"Server not initialized: {envelope.method} before the initialize request",
            )  # fmt: skip
        else:
            log.warning("%s before initialize: dropped", envelope.method)

    def _structure(self, payload: dict[str, Any], envelope: Envelope) -> Any:
        bad_params = _params_field(payload)
        if bad_params is not None and envelope.kind != "response":
            raise _ParamsError(*bad_params)
        if envelope.kind == "response":
            assert envelope.id is not None
            if "error" in payload:
                return self._converter.structure(payload, types.ResponseErrorMessage)
            result_type = self._result_types.pop(envelope.id, None) or JsonRPCResponseMessage
            if result_type is JsonRPCResponseMessage:
                payload = {key: payload.get(key) for key in ("jsonrpc", "id", "result")}
            return self._converter.structure(payload, result_type)
        assert envelope.method is not None
        fallback = JsonRPCRequestMessage if envelope.kind == "request" else JsonRPCNotification
        message_type = self.get_message_type(envelope.method) or fallback
        if message_type is fallback:  # a method lsprotocol does not know: any params will do
            keys = ("jsonrpc", "id", "method") if envelope.kind == "request" else ("jsonrpc", "method")
            payload = {**{key: payload[key] for key in keys}, "params": payload.get("params")}
        return self._converter.structure(payload, message_type)

    def _invalid_params(self, envelope: Envelope, error: Exception, payload: Any = None) -> None:
        detail, fields = (
            (error.detail, error.fields) if isinstance(error, _ParamsError) else describe_error(error)
        )
        if envelope.kind == "request":
            log.warning("%s (id %r): invalid params: %s", envelope.method, envelope.id, detail)
            self.send_error(envelope.id, INVALID_PARAMS, f"Invalid params for {envelope.method}: {detail}")
        elif envelope.kind == "notification":
            log.error("%s ignored: invalid params: %s", envelope.method, detail)
            uri = _document_uri(payload)
            if envelope.method == types.TEXT_DOCUMENT_DID_CHANGE and uri is not None:
                # Its edits are lost: stop serving the document until the client sends it whole.
                self._server.documents.mark_out_of_sync(uri, f"a didChange was invalid: {detail}")
            self._server.report_error(
                f"invalid-notification:{envelope.method}:{fields}",
                f"{envelope.method} from the client was ignored, its params are invalid: {detail}",
            )
        else:  # the client's answer to our request: fail that request instead of waiting forever
            assert envelope.id is not None
            log.error("invalid response to request %r: %s", envelope.id, detail)
            self._result_types.pop(envelope.id, None)
            future = self._request_futures.get(envelope.id)
            if future is not None and not future.done():
                self._handle_response(
                    envelope.id,
                    error=types.ResponseError(code=INVALID_PARAMS, message=f"invalid response: {detail}"),
                )

    def send_error(self, msg_id: MessageId | None, code: int, message: str) -> None:
        """One JSON-RPC error response (``"id": null`` when the id is unusable)."""
        self._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})

    def _report_frame(self, problem: FrameProblem, dropped: bool) -> None:
        if dropped:
            text = f"a message from the client was dropped: {problem.detail}"
            level = types.MessageType.Error
        else:
            text = f"the client framed a message wrongly ({problem.detail}); it was read anyway"
            level = types.MessageType.Warning
        log.warning("%s", text)
        self._server.report_error(f"frame:{problem.cause}", text, level)

    # -- the read loop -----------------------------------------------------------------------

    async def pump(self, read: Callable[[], Awaitable[bytes]], max_message_bytes: int) -> None:
        """Read frames and dispatch them until end of stream or ``exit``."""
        parser = FrameParser(max_message_bytes)
        task = asyncio.current_task()
        dispatching = False

        def stop() -> None:  # exit handled later than its frame (an async exit handler)
            if not dispatching and task is not None:
                task.cancel()

        self.on_exit = stop
        stall_tried = False
        try:
            while self.exit_code is None:
                if parser.in_body and not stall_tried:
                    try:
                        chunk = await asyncio.wait_for(read(), STALL_SECONDS)
                    except asyncio.TimeoutError:
                        stall_tried = True
                        events = parser.stalled()
                        chunk = None
                else:
                    chunk = await read()
                if chunk is not None:
                    stall_tried = False
                    events = parser.feed(chunk) if chunk else parser.close()
                dispatching = True
                try:
                    await self._dispatch(events)
                finally:
                    dispatching = False
                if chunk == b"":
                    break
        except asyncio.CancelledError:
            if self.exit_code is None:
                raise

    async def _dispatch(self, events: list[FrameEvent]) -> None:
        for number, event in enumerate(events):
            if self.exit_code is not None:
                return
            try:
                self.handle_event(event)
            except (BrokenPipeError, ConnectionError):
                raise
            except Exception as error:
                log.exception("failed to handle a message")
                self._server.report_server_error(error, type(error))
            if number + 1 < len(events) and _is_request(event):
                # An async handler starts in a task of its own: let it take its first
                # step (reading the document and the position) before the messages that
                # came after it in the same read, a didChange say, are applied.
                await asyncio.sleep(0)


def _document_uri(payload: Any) -> str | None:
    """``params.textDocument.uri`` of a raw message, where it is a string."""
    params = payload.get("params") if isinstance(payload, dict) else None
    document = params.get("textDocument") if isinstance(params, dict) else None
    uri = document.get("uri") if isinstance(document, dict) else None
    return uri if isinstance(uri, str) else None


def _is_request(event: FrameEvent) -> bool:
    payload = getattr(event, "payload", None)
    return isinstance(payload, dict) and "method" in payload and "id" in payload


class _ParamsError(Exception):
    def __init__(self, detail: str, fields: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields


# -- transports ------------------------------------------------------------------------------


class _StdinChunks:
    """Chunks of a file descriptor, read by a daemon thread (so a blocked read never holds
    up exit) with at most ``depth`` chunks waiting."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, depth: int = 8) -> None:
        self._fd = fd
        self._loop = loop
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._slots = threading.Semaphore(depth)
        threading.Thread(target=self._run, name="ghostpilot-stdin", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._slots.acquire()
            try:
                chunk = os.read(self._fd, READ_CHUNK)
            except OSError:
                chunk = b""
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, chunk)
            except RuntimeError:  # the loop is closed
                return
            if not chunk:
                return

    async def read(self) -> bytes:
        chunk = await self._queue.get()
        self._slots.release()
        return chunk


def serve_stdio(
    server: GhostpilotServer, stdin: BinaryIO, stdout: BinaryIO, max_message_bytes: int
) -> int:
    """Serve one client over stdio; return the exit code."""
    protocol: GhostpilotProtocol = server.protocol  # type: ignore[assignment]
    server._stop_event = threading.Event()
    protocol.set_writer(StdoutWriter(stdout))

    async def main() -> None:
        server.loop = asyncio.get_running_loop()
        chunks = _StdinChunks(stdin.fileno(), server.loop)
        await protocol.pump(chunks.read, max_message_bytes)

    return _run(server, main)


def serve_tcp(server: GhostpilotServer, host: str, port: int, max_message_bytes: int) -> int:
    """Serve one client on ``host:port``; return the exit code."""
    protocol: GhostpilotProtocol = server.protocol  # type: ignore[assignment]
    server._stop_event = threading.Event()

    async def main() -> None:
        server.loop = asyncio.get_running_loop()
        done = asyncio.Event()
        busy = False

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal busy
            if busy:
                log.warning("refused a second client: this server serves one at a time")
                writer.close()
                return
            busy = True
            protocol.set_writer(writer)  # type: ignore[arg-type]
            try:
                await protocol.pump(lambda: reader.read(READ_CHUNK), max_message_bytes)
            finally:
                writer.close()
                done.set()

        tcp = await asyncio.start_server(connection, host, port)
        log.info("serving on %s", ", ".join(str(s.getsockname()) for s in tcp.sockets))
        async with tcp:
            await done.wait()

    return _run(server, main)


def _run(server: GhostpilotServer, main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    protocol: GhostpilotProtocol = server.protocol  # type: ignore[assignment]
    try:
        asyncio.run(main())
    except (BrokenPipeError, ConnectionError):
        log.error("the connection to the client is lost; shutting down")
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return protocol.exit_code if protocol.exit_code is not None else 0
