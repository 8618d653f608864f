"""Pulling a GGUF model from the Hugging Face Hub, or the mirror ``$HF_ENDPOINT`` names.

huggingface_hub does the HTTP: the metadata HEAD (``get_hf_file_metadata``: size, ETag,
commit, the Hub's redirect to its CDN, ``HF_TOKEN``, proxies) and the download itself with
its retries and ranged resume (``http_get``). ``hf_hub_download`` is not used: since
huggingface_hub 2.x it deletes the partial file when a download stops, so Ctrl-C would lose
everything fetched so far. Here the partial file lives in the models directory's
``.partial/`` folder, named after the file and its ETag, and the next pull resumes it with
a Range request.

A file becomes a model only when it is complete, is a GGUF, and its sha256 matches the
registry's (for a ``REPO/FILE`` pull, the Hub's own LFS sha256): only then is it renamed
into the models directory, atomically, replacing nothing before that moment. A file that
fails the check is deleted. Nothing in ``.partial/`` is ever listed or loaded.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lsp_server.backends.gguf import GGUFError, read_header, sha256_of
from lsp_server.backends.registry import ModelEntry, find_entry, load_registry

DEFAULT_ENDPOINT = "https://huggingface.co"
PARTIAL_DIR = ".partial"
# Room left free beside the model (file-system metadata, the editor's own files).
SPACE_MARGIN_BYTES = 64 * 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")

# Called with (bytes on disk so far, total bytes or None) as the download advances.
ProgressCallback = Callable[[int, "int | None"], None]


class PullError(Exception):
    """A pull that could not finish; ``kind`` says why, the message what to do.

    Kinds: ``invalid`` (bad name), ``not_found`` (404), ``unauthorized`` (401: gated or
    private, no or wrong token), ``no_network``, ``no_space``, ``checksum``, ``not_gguf``,
    ``busy`` (another pull of the same file), ``http`` (anything else the Hub answered).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class PullCancelled(Exception):
    """The pull was cancelled; what was downloaded is kept for the next pull to resume."""


@dataclass(frozen=True)
class PullSpec:
    repo: str
    filename: str
    revision: str = "main"
    entry: ModelEntry | None = None

    @property
    def name(self) -> str:
        return self.entry.name if self.entry else f"{self.repo}/{self.filename}"

    @property
    def title(self) -> str:
        return self.entry.display_name if self.entry else self.filename

    @property
    def local_name(self) -> str:
        return Path(self.filename).name


@dataclass(frozen=True)
class RemoteFile:
    """What the Hub's metadata HEAD said about a file."""

    url: str  # where the bytes are (the Hub's CDN location after its redirect)
    size: int | None
    etag: str
    commit: str | None

    @property
    def lfs_sha256(self) -> str | None:
        """For files stored with Git LFS (every GGUF on the Hub) the ETag is their sha256."""
        return self.etag if _SHA256.fullmatch(self.etag) else None


@dataclass(frozen=True)
class PullResult:
    path: Path
    sha256: str
    size: int
    resumed_from: int  # bytes already on disk when this pull started
    already_installed: bool = False


def parse_spec(text: str, entries: list[ModelEntry] | None = None, revision: str = "main") -> PullSpec:
    """A registry name, or ``OWNER/REPO/FILE.gguf`` for any GGUF on the Hub."""
    entries = entries if entries is not None else load_registry()
    entry = find_entry(text, entries)
    if entry is not None:
        if entry.embedded:
            raise PullError("invalid", f"{entry.name} is embedded (installed with Ghostpilot): nothing to pull")
        if entry.is_derived:
            raise PullError("invalid", f"{entry.name} is written from {entry.derived_from} at first use: "
                            "nothing to pull")
        if not entry.repo:
            raise PullError("invalid", f"{entry.name} names no Hub repository: fetch {entry.file} from {entry.source}")
        return PullSpec(entry.repo, entry.file, revision, entry)
    parts = text.strip("/").split("/")
    if len(parts) >= 3 and all(parts) and parts[-1].endswith(".gguf"):
        return PullSpec("/".join(parts[:2]), "/".join(parts[2:]), revision, None)
    known = ", ".join(e.name for e in entries if e.repo and not e.embedded)
    raise PullError(
        "invalid",
        f"unknown model {text!r}: give a registry name ({known}) or OWNER/REPO/FILE.gguf from the Hub",
    )


def endpoint() -> str:
    """The Hub to talk to: ``$HF_ENDPOINT`` (a company mirror) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def fetch_metadata(spec: PullSpec) -> RemoteFile:
    """The HEAD request: size, ETag and commit of the file. Raises :class:`PullError`."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    hub = endpoint()
    url = hf_hub_url(spec.repo, spec.filename, revision=spec.revision, endpoint=hub)
    try:
        metadata = get_hf_file_metadata(url, endpoint=hub)
    except Exception as error:
        raise hub_error(error, spec) from error
    if not metadata.etag:
        raise PullError("http", f"{hub} sent no ETag for {spec.name}: is HF_ENDPOINT a Hugging Face Hub or mirror?")
    return RemoteFile(metadata.location, metadata.size, metadata.etag, metadata.commit_hash)


def hub_error(error: BaseException, spec: PullSpec) -> PullError:
    """Turn what huggingface_hub or httpx raised into a PullError that says what to do."""
    from huggingface_hub import errors

    where = f"{spec.repo} on {endpoint()}"
    if isinstance(error, errors.GatedRepoError):
        return PullError(
            "unauthorized",
            f"{where} is gated (401): accept its terms on the model's page, then set HF_TOKEN to a token "
            "of that account (huggingface.co/settings/tokens)",
        )
    if isinstance(error, errors.RepositoryNotFoundError):
        status = getattr(getattr(error, "response", None), "status_code", 404)
        return PullError(
            "unauthorized" if status == 401 else "not_found",
            f"repository {where} not found ({status}); if it is private or gated, set HF_TOKEN",
        )
    if isinstance(error, (errors.RemoteEntryNotFoundError, errors.RevisionNotFoundError)):
        return PullError("not_found", f"{spec.filename} (revision {spec.revision}) not found in {where} (404)")
    if isinstance(error, errors.OfflineModeIsEnabled):
        return PullError("no_network", f"HF_HUB_OFFLINE is set: cannot reach {endpoint()}")
    if isinstance(error, errors.HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", "?")
        kind = "unauthorized" if status in (401, 403) else "not_found" if status == 404 else "http"
        return PullError(kind, f"{where} answered {status} for {spec.filename}: {_first_line(error)}")
    if _is_network_error(error):
        return PullError(
            "no_network",
            f"cannot reach {endpoint()} ({_first_line(error) or type(error).__name__}); check the network, "
            "a proxy (HTTPS_PROXY) or HF_ENDPOINT",
        )
    return PullError("http", f"{spec.name}: {type(error).__name__}: {_first_line(error)}")


def _is_network_error(error: BaseException) -> bool:
    import httpx2

    return isinstance(error, (httpx2.TransportError, ConnectionError, TimeoutError))


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else ""


def partial_dir(dest_dir: Path) -> Path:
    return dest_dir / PARTIAL_DIR


def partial_path(dest_dir: Path, local_name: str, etag: str) -> Path:
    """Where the bytes of one version (ETag) of a file gather until they are verified."""
    return partial_dir(dest_dir) / f"{local_name}.{etag[:16]}.incomplete"


def partial_files(dest_dir: Path, local_name: str) -> list[Path]:
    folder = partial_dir(dest_dir)
    return sorted(folder.glob(f"{glob_escape(local_name)}.*.incomplete")) if folder.is_dir() else []


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def check_space(needed: int, directory: Path, free: Callable[[Path], int] = disk_free) -> None:
    available = free(directory)
    if needed + SPACE_MARGIN_BYTES > available:
        raise PullError(
            "no_space",
            f"not enough disk space in {directory}: the download needs {format_bytes(needed)} more "
            f"(plus {format_bytes(SPACE_MARGIN_BYTES)} to spare), {format_bytes(available)} is free; "
            "free some space or set GHOSTPILOT_MODELS_DIR to a larger disk",
        )


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover - loop always returns


class _Reporter:
    """The progress object ``http_get`` drives (it calls it a tqdm class): forwards the
    byte count, and stops the download between chunks once ``cancel`` is set."""

    def __init__(
        self, on_progress: ProgressCallback | None, cancel: threading.Event | None,
        *, total: int | None = None, initial: int = 0, **_: Any,
    ) -> None:  # fmt: skip
        self.on_progress, self.cancel = on_progress, cancel
        self.total, self.done = total, initial
        self._emit()

    def __enter__(self) -> _Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, count: int) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise PullCancelled("cancelled")
        self.done += count
        self._emit()

    def close(self) -> None:
        return None

    def _emit(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


def _download_headers(url: str) -> dict[str, str]:
    """The Hub's headers (user agent, ``HF_TOKEN``), without the token when the bytes come
    from another host (the CDN the Hub redirects to), as huggingface_hub itself does."""
    from huggingface_hub.utils import build_hf_headers

    headers = dict(build_hf_headers())
    if _origin(url) != _origin(endpoint()):
        headers = {key: value for key, value in headers.items() if key.lower() != "authorization"}
    return headers


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def installed_file_ok(path: Path, expected_sha256: str | None) -> str | None:
    """The sha256 of an installed file when it is a GGUF that matches, else None."""
    if not path.is_file() or expected_sha256 is None:
        return None
    try:
        read_header(path)
    except GGUFError:
        return None
    digest = sha256_of(path)
    return digest if digest == expected_sha256 else None


def pull(
    spec: PullSpec,
    dest_dir: Path,
    *,
    remote: RemoteFile | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    free: Callable[[Path], int] = disk_free,
) -> PullResult:
    """Download ``spec`` into ``dest_dir``, resuming a partial file, and install it once
    verified. Raises :class:`PullError` or :class:`PullCancelled` (partial file kept)."""
    from filelock import FileLock, Timeout

    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / spec.local_name
    if spec.entry is not None:
        digest = installed_file_ok(target, spec.entry.sha256)
        if digest is not None:
            size = target.stat().st_size
            return PullResult(target, digest, size, size, already_installed=True)
    remote = remote or fetch_metadata(spec)
    expected = spec.entry.sha256 if spec.entry else remote.lfs_sha256
    partial_dir(dest_dir).mkdir(exist_ok=True)
    lock = FileLock(str(partial_dir(dest_dir) / f"{spec.local_name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise PullError("busy", f"{spec.name} is already being downloaded by another ghostpilot") from None
    try:
        partial = partial_path(dest_dir, spec.local_name, remote.etag)
        for stale in partial_files(dest_dir, spec.local_name):
            if stale != partial:  # an older version of the file on the Hub
                stale.unlink(missing_ok=True)
        have = partial.stat().st_size if partial.exists() else 0
        if remote.size is not None and have > remote.size:
            partial.unlink()
            have = 0
        if remote.size is not None:
            check_space(remote.size - have, dest_dir, free)
        _fetch(spec, remote, partial, have, on_progress, cancel)
        digest = _verify(spec, partial, expected)
        os.replace(partial, target)
        return PullResult(target, digest, target.stat().st_size, have)
    finally:
        lock.release()


def _fetch(
    spec: PullSpec, remote: RemoteFile, partial: Path, have: int,
    on_progress: ProgressCallback | None, cancel: threading.Event | None,
) -> None:  # fmt: skip
    from huggingface_hub.file_download import http_get

    def reporter(**kwargs: Any) -> _Reporter:
        return _Reporter(on_progress, cancel, **kwargs)

    try:
        with open(partial, "ab") as stream:
            http_get(
                remote.url, stream, resume_size=have, headers=_download_headers(remote.url),
                expected_size=remote.size, displayed_filename=spec.local_name,
                tqdm_class=reporter,  # type: ignore[arg-type]
            )  # fmt: skip
    except PullCancelled:
        raise
    except Exception as error:
        raise _fetch_error(error, spec, remote, partial) from error


def _fetch_error(error: Exception, spec: PullSpec, remote: RemoteFile, partial: Path) -> PullError:
    kept = f"{format_bytes(_size(partial))} of {format_bytes(remote.size or 0)} kept"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return PullError(
            "no_space",
            f"the disk filled up while downloading {spec.name} ({kept} in {partial.parent}): "
            "free some space and pull again to resume",
        )
    if isinstance(error, OSError) and "Consistency check failed" in str(error):
        return PullError("http", f"{spec.name}: the transfer ended early ({kept}): pull again to resume")
    if isinstance(error, OSError) and not _is_network_error(error):
        return PullError("http", f"{spec.name}: writing {partial} failed: {error}")
    failure = hub_error(error, spec)
    if failure.kind == "no_network":
        return PullError("no_network", f"{failure} ({kept}: pull again to resume)")
    return failure


def _verify(spec: PullSpec, partial: Path, expected: str | None) -> str:
    """The sha256 of a complete download; a file that is not a GGUF or does not match is
    deleted and the error says so."""
    try:
        read_header(partial)
    except GGUFError as error:
        partial.unlink(missing_ok=True)
        raise PullError("not_gguf", f"{spec.name} is not a usable GGUF ({error}); the download was deleted") from error
    digest = sha256_of(partial)
    if expected is not None and digest != expected:
        partial.unlink(missing_ok=True)
        source = "the registry's" if spec.entry else "the Hub's"
        raise PullError(
            "checksum",
            f"{spec.name}: sha256 {digest} does not match {source} {expected}; the download was deleted "
            "and nothing was installed (the file on the Hub changed or the transfer was corrupted)",
        )
    return digest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def remove(name: str, dest_dir: Path, entries: list[ModelEntry] | None = None) -> list[Path]:
    """Delete an installed model (registry name or file name in ``dest_dir``) and its partial
    downloads; the paths deleted. Raises :class:`PullError` (``invalid``) when there is none."""
    entry = find_entry(name, entries if entries is not None else load_registry())
    if entry is not None and entry.embedded:
        raise PullError("invalid", f"{entry.name} is embedded (shipped by a Python package): nothing to remove")
    local_name = entry.file if entry is not None else Path(name).name
    if entry is None and not local_name.endswith(".gguf"):
        raise PullError("invalid", f"unknown model {name!r}: give a registry name or a .gguf file name")
    removed = [path for path in [dest_dir / local_name, *partial_files(dest_dir, local_name)] if path.is_file()]
    if not removed:
        raise PullError("invalid", f"{name} is not installed in {dest_dir}")
    for path in removed:
        path.unlink()
    return removed
