"""A loopback stand-in for the Hugging Face Hub's file endpoints, for the pull tests.

It answers exactly what huggingface_hub 2.x asks when ``ghostpilot models pull`` runs
(``get_hf_file_metadata``, then ``http_get``), as the real Hub does for an LFS file:

- ``HEAD|GET {hub}/{repo}/resolve/{revision}/{file}``: a 302 to the CDN with the file's
  metadata on the redirect itself: ``X-Repo-Commit``, ``ETag`` (the pointer's git oid),
  ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and ``Location``. The CDN listens on a
  second port, i.e. another origin, so the client stops at the redirect and never sends
  the token there (``_httpx2_follow_hub_redirects_with_backoff``, ``_is_same_or_hub_host``).
  An unknown repository answers 401 with ``X-Error-Code: RepoNotFound``, an unknown file
  404 with ``EntryNotFound``, a gated repository without its token 401 with ``GatedRepo``
  (``hf_raise_for_status`` maps these headers to its error classes).
- ``GET {cdn}/{sha256}``: the bytes; ``Range: bytes=N-`` gets 206 with ``Content-Range``.
  It can be throttled, and told to drop the connection after some bytes, once.

Every request is logged (method, path, Range, whether a token came, bytes sent).
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

CHUNK = 64 * 1024


@dataclass(frozen=True)
class HubFile:
    path: Path
    sha256: str
    size: int


@dataclass
class Request:
    server: str  # "hub" | "cdn"
    method: str
    path: str
    range: str | None
    authorized: bool
    status: int = 0
    sent: int = 0


@dataclass
class HubStandIn:
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    gated: dict[str, str] = field(default_factory=dict)  # repo -> the token that opens it
    throttle_bytes_per_s: float | None = None
    drop_after: int | None = None  # close the next CDN transfer after this many bytes
    log: list[Request] = field(default_factory=list)

    def add(self, repo: str, filename: str, path: Path, sha256: str | None = None) -> HubFile:
        digest = sha256 or file_sha256(path)
        entry = HubFile(path, digest, path.stat().st_size)
        self.repos.setdefault(repo, {})[filename] = entry
        return entry

    def by_sha(self, sha: str) -> HubFile | None:
        for files in self.repos.values():
            for entry in files.values():
                if entry.sha256 == sha:
                    return entry
        return None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

    def cdn_bytes(self) -> int:
        return sum(request.sent for request in self.log if request.server == "cdn")

    def __enter__(self) -> HubStandIn:
        self._hub = _serve(self, "hub")
        self._cdn = _serve(self, "cdn")
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _serve(hub: HubStandIn, role: str) -> ThreadingHTTPServer:
    handler = type(f"{role.title()}Handler", (_Handler,), {"hub": hub, "role": role})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"hub-standin-{role}", daemon=True).start()
    return server


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    role: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def do_HEAD(self) -> None:
        self._handle(body=False)

    def do_GET(self) -> None:
        self._handle(body=True)

    def _handle(self, body: bool) -> None:
        record = Request(
            self.role, self.command, self.path, self.headers.get("Range"),
            "authorization" in {key.lower() for key in self.headers.keys()},
        )  # fmt: skip
        self.hub.log.append(record)
        if self.role == "hub":
            self._resolve(record)
        else:
            self._bytes(record, body)

    def _plain(self, record: Request, status: int, headers: dict[str, str], text: str = "") -> None:
        payload = text.encode()
        record.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _resolve(self, record: Request) -> None:
        match = _RESOLVE.match(self.path.split("?")[0])
        if not match:
            self._plain(record, 404, {}, "not a resolve URL")
            return
        repo, filename = match["repo"], unquote(match["file"])
        commit = hashlib.sha1(repo.encode()).hexdigest()
        files = self.hub.repos.get(repo)
        if files is None:
            self._plain(record, 401, {"X-Error-Code": "RepoNotFound",
                                      "X-Error-Message": "Repository not found"}, "Repository not found")
            return
        token = self.hub.gated.get(repo)
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            self._plain(record, 401, {
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to model {repo} is restricted. You must have access to it "
                                   "and be authenticated to access it. Please log in.",
            }, "gated")  # fmt: skip
            return
        entry = files.get(filename)
        if entry is None:
            self._plain(record, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit,
                                      "X-Error-Message": "Entry not found"}, "Entry not found")
            return
        pointer_oid = hashlib.sha1(f"oid sha256:{entry.sha256}\nsize {entry.size}\n".encode()).hexdigest()
        self._plain(record, 302, {
            "Location": f"{self.hub.cdn}/{entry.sha256}",
            "X-Repo-Commit": commit,
            "ETag": f'"{pointer_oid}"',
            "X-Linked-Etag": f'"{entry.sha256}"',
            "X-Linked-Size": str(entry.size),
        }, "Found. Redirecting")  # fmt: skip

    def _bytes(self, record: Request, body: bool) -> None:
        entry = self.hub.by_sha(self.path.strip("/").split("?")[0])
        if entry is None:
            self._plain(record, 404, {}, "no such blob")
            return
        start = 0
        if record.range:
            match = _RANGE.match(record.range)
            if not match or int(match[1]) >= entry.size:
                self._plain(record, 416, {"Content-Range": f"bytes */{entry.size}"})
                return
            start = int(match[1])
        record.status = 206 if record.range else 200
        self.send_response(record.status)
        self.send_header("Content-Length", str(entry.size - start))
        self.send_header("Accept-Ranges", "bytes")
        if record.range:
            self.send_header("Content-Range", f"bytes {start}-{entry.size - 1}/{entry.size}")
        self.end_headers()
        if not body:
            return
        drop_after, self.hub.drop_after = self.hub.drop_after, None
        with open(entry.path, "rb") as stream:
            stream.seek(start)
            while True:
                block = stream.read(CHUNK)
                if not block:
                    break
                if drop_after is not None and record.sent + len(block) > drop_after:
                    block = block[: max(0, drop_after - record.sent)]
                    self.wfile.write(block)
                    record.sent += len(block)
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(block)
                except (BrokenPipeError, ConnectionResetError):
                    return
                record.sent += len(block)
                if self.hub.throttle_bytes_per_s:
                    time.sleep(len(block) / self.hub.throttle_bytes_per_s)


@contextmanager
def small_disk(mount: Path, size: str = "12m") -> Iterator[Path]:
    """A real small file system (tmpfs) at ``mount``; skips the test where mounting is not
    allowed (no root), and fails instead under CI=true as root, where it must work."""
    import os
    import subprocess

    import pytest

    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        message = f"cannot mount a tmpfs here: {done.stderr.strip()}"
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
