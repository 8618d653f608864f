"""A loopback stand-in for a remote engine's HTTP API, for narrow contract tests.

It answers with scripted events in the engine's documented stream format (server-sent
events or NDJSON), one every ``delay_s``, and records each request and whether the
client closed the stream before the end (so a test sees that the engine would stop).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (status, content type, body events) for a request (method, path, parsed JSON body).
Route = Callable[[str, str, Any], tuple[int, str, list[bytes]]]


@dataclass
class Seen:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    client_port: int = 0  # the client's side of the connection (same port: reused)
    sent: int = 0  # events written before the end or the client's close
    closed_early: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class StandIn:
    def __init__(
        self,
        route: Route,
        delay_s: float = 0.0,
        chunked: bool = True,
        tls: ssl.SSLContext | None = None,
        keep_alive: bool = False,
        port: int = 0,
    ) -> None:
        self.route = route
        self.keep_alive = keep_alive
        self.delay_s = delay_s
        self.chunked = chunked
        self.seen: list[Seen] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                seen = Seen(
                    self.command, self.path, body, {k.lower(): v for k, v in self.headers.items()},
                    client_port=self.client_address[1],
                )
                stand_in.seen.append(seen)
                try:
                    status, kind, events = stand_in.route(self.command, self.path, body)
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    if stand_in.chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                    else:
                        self.send_header("Content-Length", str(sum(map(len, events))))
                    if not stand_in.keep_alive:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    for event in events:
                        if stand_in.chunked:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                        else:
                            self.wfile.write(event)
                        self.wfile.flush()
                        seen.sent += 1
                        if stand_in.delay_s:
                            threading.Event().wait(stand_in.delay_s)
                    if stand_in.chunked:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    seen.closed_early = True
                finally:
                    seen.done.set()

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sse(events: list[Any]) -> list[bytes]:
    return [
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    ]


def ndjson(events: list[Any]) -> list[bytes]:
    return [json.dumps(e).encode() + b"\n" for e in events]


def words(text: str) -> Iterator[str]:
    """The text in pieces as a tokenizer might stream it (a word with its leading blanks)."""
    piece = ""
    for char in text:
        if piece and char in " \n" and piece.strip():
            yield piece
            piece = ""
        piece += char
    if piece:
        yield piece
