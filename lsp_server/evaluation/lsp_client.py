"""A small JSON-RPC client for driving ``ghostpilot serve`` over stdio, as an editor does.

Deliberately independent of pygls: the benchmark should see the server exactly as a
foreign client would, byte for byte. One reader thread parses frames; requests get
futures; server-to-client requests (``workspace/configuration``,
``window/workDoneProgress/create``...) are answered so the server never waits.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any


class LspError(RuntimeError):
    """The server answered with an error, died, or did not answer in time."""


def utf16_position(text: str, offset: int) -> tuple[int, int]:
    """LSP ``(line, character)`` of code-point ``offset`` (characters in UTF-16 units)."""
    line = text.count("\n", 0, offset)
    line_start = text.rfind("\n", 0, offset) + 1
    segment = text[line_start:offset]
    return line, len(segment.encode("utf-16-le")) // 2


class LspClient:
    def __init__(self, argv: Sequence[str], *, settings: Mapping[str, Any] | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 stderr_path: str | None = None) -> None:
        self.settings = dict(settings or {})
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=dict(env) if env is not None else None, cwd=cwd)
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.notifications: queue.Queue[tuple[float, str, Any]] = queue.Queue()
        self.handlers: dict[str, Callable[[Any], Any]] = {
            "workspace/configuration": lambda params: [
                self.settings for _ in (params or {}).get("items", [])],
            "window/workDoneProgress/create": lambda params: None,
            "client/registerCapability": lambda params: None,
            "client/unregisterCapability": lambda params: None,
            "window/showMessageRequest": lambda params: None,
            "workspace/applyEdit": lambda params: {"applied": False},
        }
        self.bad_output: list[bytes] = []
        self._reader = threading.Thread(target=self._read_loop, name="lsp-client", daemon=True)
        self._reader.start()

    # -- sending ------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        frame = b"Content-Length: %d\r\n\r\n" % len(body) + body
        assert self.process.stdin is not None
        with self._write_lock:
            try:
                self.process.stdin.write(frame)
                self.process.stdin.flush()
            except (BrokenPipeError, OSError) as error:
                raise LspError(f"server is gone ({error})") from error

    def notify(self, method: str, params: Any) -> float:
        """Send a notification; returns the monotonic time it left."""
        self._send({"jsonrpc": "2.0", "method": method, "params": params})
        return time.perf_counter()

    def request_async(self, method: str, params: Any) -> Future[Any]:
        request_id = next(self._ids)
        future: Future[Any] = Future()
        with self._lock:
            self._pending[request_id] = future
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return future

    def request(self, method: str, params: Any, timeout: float = 120.0) -> Any:
        future = self.request_async(method, params)
        try:
            return future.result(timeout=timeout)
        except TimeoutError as error:
            raise LspError(f"{method}: no answer in {timeout:g} s") from error

    # -- receiving ----------------------------------------------------------------------

    def _read_loop(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            headers: dict[str, str] = {}
            while True:
                line = stream.readline()
                if not line:
                    self._fail_all(LspError("server closed its output"))
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, sep, value = line.decode("ascii", errors="replace").partition(":")
                if not sep:
                    self.bad_output.append(line)  # anything but JSON-RPC on stdout
                    continue
                headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers["content-length"])
            except (KeyError, ValueError):
                self.bad_output.append(repr(headers).encode())
                continue
            body = stream.read(length)
            try:
                message = json.loads(body)
            except json.JSONDecodeError:
                self.bad_output.append(body)
                continue
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" in message and "id" in message:
            handler = self.handlers.get(message["method"])
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"]}
            if handler is None:
                reply["error"] = {"code": -32601, "message": "method not found"}
            else:
                reply["result"] = handler(message.get("params"))
            try:
                self._send(reply)
            except LspError:
                pass
        elif "method" in message:
            self.notifications.put((time.perf_counter(), message["method"], message.get("params")))
        elif "id" in message:
            with self._lock:
                future = self._pending.pop(message["id"], None)
            if future is None:
                return
            if "error" in message:
                error = message["error"]
                future.set_exception(LspError(f"{error.get('code')}: {error.get('message')}"))
            else:
                future.set_result(message.get("result"))

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    # -- lifecycle ----------------------------------------------------------------------

    def initialize(self, *, root_uri: str | None = None, timeout: float = 120.0) -> Any:
        result = self.request("initialize", {
            "processId": None, "rootUri": root_uri,
            "initializationOptions": self.settings,
            "capabilities": {
                "workspace": {"configuration": True},
                "window": {"workDoneProgress": True},
                "textDocument": {"inlineCompletion": {}, "synchronization": {"didSave": True}},
            },
        }, timeout=timeout)
        self.notify("initialized", {})
        return result

    def wait_for(self, predicate: Callable[[str, Any], bool], timeout: float) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LspError(f"no matching notification in {timeout:g} s")
            try:
                _, method, params = self.notifications.get(timeout=left)
            except queue.Empty:
                continue
            if predicate(method, params):
                return method, params

    def close(self, timeout: float = 10.0) -> int | None:
        try:
            self.request("shutdown", None, timeout=timeout)
            self.notify("exit", None)
        except (LspError, OSError):
            pass
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            if hasattr(self._stderr, "close"):
                self._stderr.close()
