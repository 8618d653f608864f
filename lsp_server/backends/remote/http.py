"""A small streaming HTTP/1.1 client on plain sockets (standard library only).

Why not ``http.client`` or ``urllib``: a suggestion's stream must stop the moment a stop
rule cuts it or a newer request supersedes it, so that the engine stops generating. Their
buffered readers cannot be woken from another thread nor polled with a timeout (a timed
out read leaves them unusable). Here every wait is a short ``recv`` poll that checks the
:class:`~lsp_server.backends.base.CancelToken` and the request's deadline, and closing a
:class:`Response` closes the connection, which llama-server, vLLM and Ollama all treat as
"stop generating".

Handles: ``http``/``https``, TLS verification on or off, a CA bundle, a client
certificate, proxies from ``HTTP(S)_PROXY``/``NO_PROXY`` (loopback hosts never go through
one), Bearer API keys (never in a ``repr`` nor a message), chunked and length-delimited
bodies. Every failure is a :class:`RemoteError` whose ``kind`` names the cause.

Keep-alive: with a :class:`Pool`, a connection whose answer was read to its end goes back
to the pool and the next request reuses it (no TCP or TLS handshake per keystroke). A
stream closed early is never reused: closing it is what stops the engine. A request sent
on a reused connection that the engine had meanwhile closed (no byte of an answer came
back) is sent again once on a fresh connection.
"""

from __future__ import annotations

import base64
import errno
import ipaddress
import json
import select
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lsp_server.backends.base import Cancelled, CancelToken, ModelUnavailable

POLL_S = 0.05  # how often a waiting read checks the cancel token
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_IDLE = 4  # idle keep-alive connections kept per engine
# Linux delays ACKs on a connection past its first few segments; an engine that writes an
# answer's head and body (or a stream's events) in separate small sends without
# TCP_NODELAY then waits for that ACK (Nagle): 40 ms per answer on a kept-alive
# connection. Asking for quick ACKs again after each read avoids it.
QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class RemoteError(ModelUnavailable):
    """The engine could not be reached or refused the request; ``kind`` names why:
    ``refused``, ``dns``, ``timeout``, ``tls``, ``auth``, ``not-found``, ``dropped``,
    ``http``, ``protocol``."""

    def __init__(self, kind: str, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class HttpOptions:
    timeout_s: float = 30.0  # connecting, and the longest wait for the next bytes
    verify: bool = True
    ca_bundle: str = ""
    client_cert: str = ""
    client_key: str = ""
    api_key: str = field(default="", repr=False)
    # What to call the key in messages (the environment variable it came from).
    api_key_source: str = ""


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
        ".localhost"
    ):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_for(
    url: urllib.parse.SplitResult, environ: Mapping[str, str] | None = None
) -> str | None:
    """The proxy URL for ``url`` from the standard environment variables, or None.

    Loopback hosts never use one: a proxy cannot reach this machine's loopback.
    """
    host = url.hostname or ""
    if is_loopback(host):
        return None
    if environ is None:
        proxies = urllib.request.getproxies()
        bypass = urllib.request.proxy_bypass(host) if proxies else False
    else:
        proxies = {}
        for key, value in environ.items():
            if value and key.lower().endswith("_proxy"):
                proxies[key.lower()[: -len("_proxy")]] = value
        bypass = _no_proxy_match(host, proxies.get("no", ""))
    if bypass:
        return None
    return proxies.get(url.scheme) or proxies.get("all") or None


def _no_proxy_match(host: str, no_proxy: str) -> bool:
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*":
            return True
        if entry and (
            host.lower() == entry.lstrip(".") or host.lower().endswith("." + entry.lstrip("."))
        ):
            return True
    return False


def tls_context(options: HttpOptions) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=options.ca_bundle or None)
    except (OSError, ssl.SSLError) as error:
        raise RemoteError(
            "tls", f"cannot read the CA bundle {options.ca_bundle!r}: {error}"
        ) from error
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.client_cert:
        try:
            context.load_cert_chain(options.client_cert, options.client_key or None)
        except (OSError, ssl.SSLError) as error:
            raise RemoteError(
                "tls", f"cannot load the client certificate {options.client_cert!r}: {error}"
            ) from error
    return context


class _Deadline:
    def __init__(self, seconds: float, cancel: CancelToken | None) -> None:
        self.seconds = seconds
        self.cancel = cancel
        self.renew()

    def renew(self) -> None:
        self.until = time.monotonic() + self.seconds

    def check(self, what: str) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(self.cancel.reason)
        if time.monotonic() > self.until:
            raise RemoteError("timeout", f"no answer within {self.seconds:g} s while {what}")


PoolKey = tuple[str, str, int, str]  # scheme, host, port, proxy URL


class Pool:
    """Idle keep-alive connections per engine (thread-safe)."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.max_idle = max_idle
        self._idle: dict[PoolKey, list[socket.socket]] = {}
        self._lock = threading.Lock()
        self.opened = 0  # connections made (for tests and benchmarks)
        self.reused = 0

    def take(self, key: PoolKey) -> socket.socket | None:
        """An idle connection still open, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                sock = idle.pop()
            if _still_open(sock):
                self.reused += 1
                return sock
            _close(sock)

    def give(self, key: PoolKey, sock: socket.socket) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle:
                idle.append(sock)
                return
        _close(sock)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for sockets in idle.values():
            for sock in sockets:
                _close(sock)


def _still_open(sock: socket.socket) -> bool:
    """An idle connection has nothing to read; readable means closed by the other end."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _quick_ack(sock: socket.socket | None) -> None:
    if QUICKACK is not None and sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        except OSError:
            pass


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class Response:
    """A response whose body is read as it arrives; ``close()`` ends the connection, or
    gives it back to the pool when the answer was read to its end."""

    def __init__(
        self,
        sock: socket.socket,
        deadline: _Deadline,
        where: str,
        pool: Pool | None = None,
        key: PoolKey | None = None,
    ) -> None:
        self._sock: socket.socket | None = sock
        self._deadline = deadline
        self._buffer = bytearray()
        self._eof = False
        self._complete = False  # the whole body was read, and nothing after it
        self._pool = pool
        self._key = key
        self.where = where
        self.got_bytes = False
        self.status = 0
        self.version = ""
        self.reason = ""
        self.headers: dict[str, str] = {}

    # -- raw reading ----------------------------------------------------------------------

    def _fill(self, what: str) -> bool:
        """Read more bytes into the buffer; False at the end of the connection."""
        if self._eof or self._sock is None:
            return False
        self._deadline.renew()
        while True:
            self._deadline.check(what)
            try:
                data = self._sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except ssl.SSLError as error:
                raise RemoteError("tls", f"TLS failure talking to {self.where}: {error}") from error
            except OSError as error:
                if self._deadline.cancel is not None and self._deadline.cancel.cancelled:
                    raise Cancelled(self._deadline.cancel.reason) from error
                raise RemoteError(
                    "dropped", f"the connection to {self.where} dropped while {what} ({error})"
                ) from error
            if not data:
                self._eof = True
                return False
            self.got_bytes = True
            self._buffer.extend(data)
            _quick_ack(self._sock)
            return True

    def _read_line(self, what: str, limit: int = MAX_HEADER_BYTES) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > limit:
                raise RemoteError("protocol", f"{self.where} sent a line over {limit} bytes")
            if not self._fill(what):
                if self._buffer:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None

    def _read_exact(self, size: int, what: str) -> bytes:
        while len(self._buffer) < size:
            if not self._fill(what):
                raise RemoteError("dropped", f"the connection to {self.where} dropped while {what}")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    # -- HTTP -----------------------------------------------------------------------------

    def read_head(self) -> None:
        line = self._read_line("waiting for the answer")
        if line is None:
            raise RemoteError("dropped", f"{self.where} closed the connection without answering")
        parts = line.decode("latin-1").strip().split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise RemoteError("protocol", f"{self.where} did not answer HTTP: {line[:80]!r}")
        self.version = parts[0]
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        while True:
            header = self._read_line("reading the answer's headers")
            if header is None:
                raise RemoteError("dropped", f"{self.where} closed the connection mid-headers")
            if header in (b"\r\n", b"\n"):
                break
            name, _, value = header.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives (de-chunked)."""
        what = "streaming the answer"
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                size_line = self._read_line(what)
                if size_line is None:
                    raise RemoteError(
                        "dropped", f"the connection to {self.where} dropped while {what}"
                    )
                try:
                    size = int(size_line.split(b";")[0].strip() or b"x", 16)
                except ValueError:
                    raise RemoteError("protocol", f"{self.where} sent a bad chunk header") from None
                if size == 0:
                    while (trailer := self._read_line(what)) not in (None, b"\r\n", b"\n"):
                        del trailer
                    self._complete = trailer is not None
                    return
                yield self._read_exact(size, what)
                self._read_exact(2, what)
        elif "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left > 0:
                if not self._buffer and not self._fill(what):
                    raise RemoteError(
                        "dropped", f"the connection to {self.where} dropped while {what}"
                    )
                take = bytes(self._buffer[:left])
                del self._buffer[: len(take)]
                left -= len(take)
                yield take
            self._complete = True
        else:
            while self._buffer or self._fill(what):
                data = bytes(self._buffer)
                self._buffer.clear()
                yield data

    def lines(self) -> Iterator[bytes]:
        """The body split at ``\\n`` (for server-sent events and NDJSON)."""
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending

    def body(self) -> bytes:
        out = bytearray()
        for chunk in self.chunks():
            out.extend(chunk)
            if len(out) > MAX_BODY_BYTES:
                raise RemoteError(
                    "protocol", f"{self.where} sent an answer over {MAX_BODY_BYTES} bytes"
                )
        return bytes(out)

    def json(self) -> Any:
        data = self.body()
        try:
            return json.loads(data)
        except ValueError:
            raise RemoteError(
                "protocol", f"{self.where} did not answer JSON: {data[:80]!r}"
            ) from None

    def drain(self, rest: Iterator[bytes], max_bytes: int = 65536, max_s: float = 1.0) -> None:
        """Read what is left of an answer whose content is over (up to the body's end
        marker), so that its connection can be reused; gives up after ``max_bytes`` or
        ``max_s`` without bytes, and the connection is then closed."""
        self._deadline = _Deadline(max_s, self._deadline.cancel)
        size = 0
        try:
            for line in rest:
                size += len(line)
                if size > max_bytes:
                    return
        except (RemoteError, Cancelled):
            return

    @property
    def reusable(self) -> bool:
        """Read to its end, nothing left over, and the engine keeps the connection open."""
        return (
            self._complete
            and not self._buffer
            and self.version == "HTTP/1.1"
            and "close" not in self.headers.get("connection", "").lower()
        )

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._pool is not None and self._key is not None and self.reusable:
            self._pool.give(self._key, sock)
        else:
            _close(sock)

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _connect(host: str, port: int, deadline: _Deadline, where: str) -> socket.socket:
    """A connected socket; the wait polls ``deadline`` (so a newer request or a cancel
    stops it at once, and an unanswering host costs at most the timeout)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise RemoteError(
            "dns", f"cannot resolve {host!r} for {where}: {error.strerror}"
        ) from error
    failure: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                raise OSError(code, os_error_text(code))
            while code != 0:
                try:
                    deadline.check(f"connecting to {where}")
                except RemoteError as error:
                    raise RemoteError(
                        "timeout", f"cannot reach {where}: no answer within {deadline.seconds:g} s"
                    ) from error
                _, writable, _ = select.select([], [sock], [], POLL_S)
                if writable:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code != 0:
                        raise OSError(code, os_error_text(code))
                    break
        except OSError as error:
            sock.close()
            failure = error
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _quick_ack(sock)
        sock.settimeout(POLL_S)
        return sock
    if failure is not None and failure.errno == errno.ECONNREFUSED:
        raise RemoteError(
            "refused", f"cannot reach {where}: connection refused (is the engine running?)"
        ) from failure
    text = (failure.strerror if failure is not None else "") or str(failure)
    raise RemoteError("refused", f"cannot reach {where}: {text}") from failure


def os_error_text(code: int) -> str:
    import os

    return os.strerror(code)


def _wrap_tls(sock: socket.socket, host: str, options: HttpOptions, where: str) -> socket.socket:
    context = tls_context(options)
    try:
        sock.settimeout(options.timeout_s)
        wrapped = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as error:
        sock.close()
        raise RemoteError(
            "tls",
            f"TLS certificate of {where} not trusted ({error.verify_message}); set tlsCaBundle to "
            "the CA that signed it, or tlsVerify to false",
        ) from error
    except (ssl.SSLError, OSError) as error:
        sock.close()
        raise RemoteError("tls", f"TLS handshake with {where} failed: {error}") from error
    wrapped.settimeout(POLL_S)
    return wrapped


def _tunnel(
    sock: socket.socket,
    host: str,
    port: int,
    proxy: urllib.parse.SplitResult,
    deadline: _Deadline,
    where: str,
) -> None:
    head = f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{_proxy_auth(proxy)}\r\n"
    sock.sendall(head.encode("latin-1"))
    response = Response(sock, deadline, f"the proxy for {where}")
    response.read_head()
    if response.status != 200:
        raise RemoteError(
            "http",
            f"the proxy {proxy.hostname} refused to tunnel to {where}: HTTP {response.status}",
        )


def _proxy_auth(proxy: urllib.parse.SplitResult) -> str:
    if not proxy.username:
        return ""
    user = urllib.parse.unquote(proxy.username)
    password = urllib.parse.unquote(proxy.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Proxy-Authorization: Basic {token}\r\n"


def request(
    method: str,
    url: str,
    options: HttpOptions,
    *,
    body: Any = None,
    cancel: CancelToken | None = None,
    where: str = "",
    accept: str = "application/json",
    pool: Pool | None = None,
) -> Response:
    """Send a request and read the answer's head; the caller reads the body and closes.

    With ``pool``, an idle connection to the same engine is reused (and the answer's
    connection is given back when it was read to its end); a reused connection that turns
    out closed before any byte of an answer came back is replaced once by a fresh one.

    Raises :class:`RemoteError` for a failure to connect or an HTTP error status (the
    message says what to do) and :class:`Cancelled` when ``cancel`` is set meanwhile.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError("protocol", f"not an http(s) URL: {url!r}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = where or f"{parts.scheme}://{parts.netloc}"
    deadline = _Deadline(options.timeout_s, cancel)
    proxy_url = proxy_for(parts)
    proxy = (
        urllib.parse.urlsplit(proxy_url if "://" in (proxy_url or "") else f"http://{proxy_url}")
        if proxy_url
        else None
    )
    if proxy is not None and not proxy.hostname:
        proxy = None
    key: PoolKey = (parts.scheme, host, port, proxy.geturl() if proxy is not None else "")
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    if proxy is not None and parts.scheme == "http":
        target = url  # absolute form through a plain proxy
    payload = b"" if body is None else json.dumps(body).encode("utf-8")
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Accept: {accept}",
        f"Connection: {'keep-alive' if pool is not None else 'close'}",
        "User-Agent: ghostpilot",
    ]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    if options.api_key:
        lines.append(f"Authorization: Bearer {options.api_key}")
    if proxy is not None and parts.scheme == "http" and proxy.username:
        lines.append(_proxy_auth(proxy).strip())
    message = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload

    reused = pool.take(key) if pool is not None else None
    if reused is not None:
        try:
            return _exchange(reused, message, deadline, where, options, pool, key)
        except _StaleConnection:
            pass  # the engine had closed it: once more, on a fresh connection
    sock = _open(parts.scheme, host, port, proxy, deadline, where, options)
    if pool is not None:
        pool.opened += 1
    try:
        return _exchange(sock, message, deadline, where, options, pool, key)
    except _StaleConnection as stale:
        raise stale.error from stale.error.__cause__


class _StaleConnection(Exception):
    """The connection was closed before any byte of an answer: safe to send again."""

    def __init__(self, error: RemoteError) -> None:
        super().__init__(str(error))
        self.error = error


def _open(
    scheme: str,
    host: str,
    port: int,
    proxy: urllib.parse.SplitResult | None,
    deadline: _Deadline,
    where: str,
    options: HttpOptions,
) -> socket.socket:
    if proxy is not None and proxy.hostname:
        sock = _connect(proxy.hostname, proxy.port or 80, deadline, f"the proxy {proxy.hostname}")
    else:
        sock = _connect(host, port, deadline, where)
    if scheme != "https":
        return sock
    try:
        if proxy is not None:
            _tunnel(sock, host, port, proxy, deadline, where)
        return _wrap_tls(sock, host, options, where)
    except BaseException:
        sock.close()
        raise


def _exchange(
    sock: socket.socket,
    message: bytes,
    deadline: _Deadline,
    where: str,
    options: HttpOptions,
    pool: Pool | None,
    key: PoolKey,
) -> Response:
    """Send ``message`` on ``sock`` and read the answer's head."""
    try:
        sock.sendall(message)
    except ssl.SSLError as error:
        sock.close()
        raise RemoteError("tls", f"TLS failure talking to {where}: {error}") from error
    except OSError as error:
        sock.close()
        raise _StaleConnection(RemoteError(
            "dropped", f"the connection to {where} dropped while sending ({error})"
        )) from error  # fmt: skip
    except BaseException:
        sock.close()
        raise
    response = Response(sock, deadline, where, pool, key)
    try:
        response.read_head()
    except RemoteError as error:
        response.close()
        if error.kind == "dropped" and response.status == 0 and not response.got_bytes:
            raise _StaleConnection(error) from error
        raise
    except BaseException:
        response.close()
        raise
    try:
        if response.status >= 400:
            raise status_error(response.status, _error_text(response), where, options)
    except BaseException:
        response.close()
        raise
    return response


def _error_text(response: Response) -> str:
    try:
        data = response.body()[:4096]
    except (RemoteError, Cancelled):
        return ""
    try:
        parsed = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace").strip()[:300]
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(parsed)[:300]


def status_error(status: int, text: str, where: str, options: HttpOptions) -> RemoteError:
    """One clear message per HTTP error status (the server's own words appended)."""
    said = f": {text}" if text else ""
    if status in (401, 403):
        if options.api_key:
            hint = f"the key in {options.api_key_source or 'the API key'} was rejected"
        else:
            hint = "it needs an API key: set apiKeyEnv to the environment variable that holds it"
        return RemoteError("auth", f"{where} answered HTTP {status} ({hint}){said}", status)
    if status == 404:
        return RemoteError(
            "not-found",
            f"{where} answered HTTP 404 (unknown model or endpoint: check remoteModel and "
            f"backend){said}",
            status,
        )
    return RemoteError("http", f"{where} answered HTTP {status}{said}", status)
