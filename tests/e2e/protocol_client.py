"""A raw-bytes client for ``python -m lsp_server serve`` (the real server process).

Frames are written by hand, so tests can send what a broken or hostile client would.
Everything the server writes on stdout is parsed strictly: ``Content-Length`` (and
optionally ``Content-Type``) headers with CRLF, then that many bytes of JSON-RPC 2.0.
Anything else is recorded in ``stdout_problems``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tests.conftest import SERVER_COMMAND

Message = dict[str, Any]


def frame(body: bytes | str | Message | list[Any], header: str = "Content-Length: {n}\r\n\r\n") -> bytes:
    """``body`` (JSON-encoded unless bytes) behind ``header``, where ``{n}`` is its length."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    return header.format(n=len(data)).encode() + data


def request(msg_id: Any, method: str, params: Any = None) -> Message:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}


def notification(method: str, params: Any) -> Message:
    return {"jsonrpc": "2.0", "method": method, "params": params}


class RawServer:
    """The server process with its stdio; a thread parses what it writes."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.stderr: IO[bytes] = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [*SERVER_COMMAND, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, cwd=cwd,
        )
        self.messages: list[Message] = []
        self.stdout_problems: list[str] = []
        self.eof = False
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()
        self._next_id = 1000
        threading.Thread(target=self._read, name="raw-client", daemon=True).start()

    # -- writing ---------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        assert self.process.stdin is not None
        with self._write_lock:
            self.process.stdin.write(data)
            self.process.stdin.flush()

    def send(self, message: Message | list[Any]) -> None:
        self.send_bytes(frame(message))

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def call(self, method: str, params: Any = None, timeout: float = 60) -> Message:
        """Send a request and wait for its one response."""
        msg_id = self.new_id()
        self.send(request(msg_id, method, params))
        return self.response(msg_id, timeout)

    def initialize(self, capabilities: Message | None = None, initialized: bool = True) -> Message:
        result = self.call("initialize", {"processId": None, "rootUri": None, "capabilities": capabilities or {}})
        if initialized:
            self.send(notification("initialized", {}))
        return result

    # -- reading ---------------------------------------------------------------------------

    def _read(self) -> None:
        out = self.process.stdout
        assert out is not None
        try:
            while True:
                line = out.readline()
                if not line:
                    break
                headers: dict[str, str] = {}
                while line != b"\r\n":
                    name, sep, value = line.decode("ascii", "replace").partition(": ")
                    if not line.endswith(b"\r\n") or not sep or name not in ("Content-Length", "Content-Type"):
                        self._problem(f"not a header line: {line[:120]!r}")
                        return
                    headers[name] = value.rstrip("\r\n")
                    line = out.readline()
                length = int(headers["Content-Length"])
                body = out.read(length)
                try:
                    message = json.loads(body)
                except ValueError:
                    self._problem(f"a body that is not JSON: {body[:120]!r}")
                    return
                if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                    self._problem(f"not JSON-RPC 2.0: {body[:120]!r}")
                    return
                if "method" in message and "id" in message:  # the server asks: answer null
                    self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                with self._changed:
                    self.messages.append(message)
                    self._changed.notify_all()
        except (OSError, ValueError, KeyError) as error:
            self._problem(f"reading stdout failed: {error!r}")
        finally:
            with self._changed:
                self.eof = True
                self._changed.notify_all()

    def _problem(self, text: str) -> None:
        with self._changed:
            self.stdout_problems.append(text)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 60) -> Message:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for message in self.messages[seen:]:
                    if predicate(message):
                        return message
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError(
                        f"no such message after {timeout} s (eof={self.eof}); "
                        f"stdout problems: {self.stdout_problems}; stderr tail:\n{self.stderr_text()[-3000:]}"
                    )
                self._changed.wait(left)

    def response(self, msg_id: Any, timeout: float = 60) -> Message:
        return self.wait_for(lambda m: "method" not in m and m.get("id") == msg_id, timeout)

    def responses(self, msg_id: Any) -> list[Message]:
        with self._changed:
            return [m for m in self.messages if "method" not in m and m.get("id") == msg_id]

    def notifications(self, method: str) -> list[Message]:
        with self._changed:
            return [m for m in self.messages if m.get("method") == method and "id" not in m]

    def sync(self) -> None:
        """Wait until the server has handled everything sent so far, and sent what that
        made it queue on its event loop (logMessage, showMessage). It handles messages in
        order; a second round trip starts only after the loop ran what the first queued."""
        for _ in range(2):
            reply = self.call("ghostpilot/stats", {})
            assert "result" in reply, reply

    # -- the process -----------------------------------------------------------------------

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def wait_exit(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self.stderr.close()
