"""Models in the editor: the download offer, and the ``ghostpilot/models`` request.

When the configured ``model`` names a registry model that is not installed, its load
fails; the server then asks (``window/showMessageRequest``) "Download Qwen2.5-Coder 1.5B
(1.6 GB)?", showing the licence first where it restricts use. On yes it pulls the file
(``backends/download.py``) with a cancellable ``$/progress``, and loads the model once
the file is verified. A cancelled or failed download keeps its bytes for the next try.
Neovim, Emacs and any other client get this through the standard messages.

``ghostpilot/models`` (request, no params) answers the catalogue for model pickers (the
VS Code "Select model" quick pick): every registry model with size, licence, HumanEval,
installed or not, and the one recommended for this machine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lsprotocol import types

from lsp_server.backends import download
from lsp_server.backends.catalog import Machine, catalog, detect_machine, recommend
from lsp_server.backends.registry import ModelEntry, load_registry, models_dir

# At run time, not under TYPE_CHECKING: pygls resolves handlers' annotations
# (typing.get_type_hints). No cycle: server.py imports features only in create_server().
from lsp_server.server import GhostpilotServer, Progress

log = logging.getLogger(__name__)

T = TypeVar("T")
MODELS_REQUEST = "ghostpilot/models"
DECLINE = "Not now"
PROGRESS_EVERY_S = 0.5


# -- what the user reads (pure) ----------------------------------------------------------


def offer_text(entry: ModelEntry, size: int | None) -> str:
    """The question, e.g. "Download Qwen2.5-Coder 1.5B (1.6 GB)? ..."."""
    shown = download.format_bytes(size) if size is not None else "size unknown"
    text = (f"Download {entry.display_name} ({shown})? The model setting names {entry.name}, "
            f"which is not installed yet.")  # fmt: skip
    if entry.needs_license_acceptance:
        where = f" ({entry.license_url})" if entry.license_url else ""
        text += f" It is licensed under the {entry.license}{where}: downloading it accepts that licence."
    return text


def accept_title(entry: ModelEntry) -> str:
    return "Accept licence and download" if entry.needs_license_acceptance else "Download"


def progress_text(done: int, total: int | None, start: int, elapsed_s: float) -> tuple[str, int | None]:
    """"512.0 MB of 1.6 GB, 45.1 MB/s, 0:12 left" and the percentage, from the byte count."""
    speed = (done - start) / elapsed_s if elapsed_s > 0 else 0.0
    if total:
        left = f", {_clock((total - done) / speed)} left" if speed > 0 else ""
        text = f"{download.format_bytes(done)} of {download.format_bytes(total)}, {download.format_bytes(speed)}/s{left}"
        return text, min(100, int(done * 100 / total))
    return f"{download.format_bytes(done)}, {download.format_bytes(speed)}/s", None


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# -- the offer ----------------------------------------------------------------------------


def in_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """Run ``work`` on a daemon thread: unlike the default executor's threads, a download in
    progress never keeps the server process alive after ``exit`` (its bytes are kept)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = work()
        except BaseException as error:
            loop.call_soon_threadsafe(settle, None, error)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="ghostpilot-pull", daemon=True).start()
    return future


@dataclass
class _Meter:
    """Turns the download thread's byte counts into at most two $/progress reports a second."""

    report: Callable[[str, int | None], None]  # called on the event loop
    call_soon: Callable[..., None]
    started: float = 0.0
    start_bytes: int | None = None
    last: float = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self.start_bytes is None:
            self.started, self.start_bytes = now, done
        if now - self.last < PROGRESS_EVERY_S and done != total:
            return
        self.last = now
        text, percentage = progress_text(done, total, self.start_bytes, now - self.started)
        self.call_soon(self.report, text, percentage)


class ModelOffers:
    """One download at a time; offered each time the configured model fails to load
    because it is not installed (a start, or a changed setting: each a user's act)."""

    def __init__(self, server: GhostpilotServer) -> None:
        self.server = server
        self.busy = False
        self._machine: Machine | None = None
        self._cancel: threading.Event | None = None  # the running download's

    def stop(self) -> None:
        """Shutdown: stop a running download (its bytes are kept for the next one)."""
        if self._cancel is not None:
            self._cancel.set()

    def on_model_state(self, state: str, message: str) -> None:
        """Worker listener (worker thread): a failed load may be a model to download."""
        if state == "error":
            self.server.call_soon(self._schedule)

    def _schedule(self) -> None:
        loop = self.server.loop
        if loop is not None and not self.busy:
            loop.create_task(self.offer())

    async def offer(self) -> None:
        if self.busy:
            return
        self.busy = True
        model = self.server.settings.model
        try:
            entry = await asyncio.to_thread(self.server.missing_model)
            if entry is not None:
                await self._offer(entry)
        except Exception as error:  # never let a download take the server down
            log.exception("model download failed")
            self._tell(types.MessageType.Error, f"downloading {model} failed: {error}")
        finally:
            self.busy = False

    async def _offer(self, entry: ModelEntry) -> None:
        spec = download.parse_spec(entry.name)
        try:
            remote = await asyncio.to_thread(download.fetch_metadata, spec)
        except download.PullError as error:
            self._tell(types.MessageType.Error, f"{entry.name} is not installed and cannot be downloaded: {error}")
            return
        accept = accept_title(entry)
        answer = await self.server.window_show_message_request_async(
            types.ShowMessageRequestParams(
                type=types.MessageType.Info,
                message=f"Ghostpilot: {offer_text(entry, remote.size)}",
                actions=[types.MessageActionItem(title=accept), types.MessageActionItem(title=DECLINE)],
            )
        )
        if answer is None or answer.title != accept:
            self.server.log_message(f"download of {entry.name} declined")
            return
        if await self._download(spec, remote) and self.server.settings.model == entry.name:
            self.server.start_model_load()

    async def _download(self, spec: download.PullSpec, remote: download.RemoteFile) -> bool:
        cancel = threading.Event()
        progress = Progress(self.server, "Ghostpilot", kind="pull", cancellable=True, on_cancel=cancel.set)
        await progress.begin(f"downloading {spec.title}", percentage=0)
        destination = models_dir()
        self.server.log_message(f"downloading {spec.name} from {download.endpoint()}/{spec.repo} into {destination}")

        def report(text: str, percentage: int | None) -> None:
            progress.report(text, percentage, cancellable=True)

        meter = _Meter(report, self.server.call_soon)
        outcome, ok = "", False
        self._cancel = cancel
        try:
            result = await in_daemon_thread(
                lambda: download.pull(spec, destination, remote=remote, on_progress=meter, cancel=cancel)
            )
            outcome, ok = f"{spec.title} downloaded and verified (sha256 {result.sha256[:12]}…)", True
            self.server.log_message(f"installed {result.path} (sha256 {result.sha256})")
        except download.PullCancelled:
            outcome = f"download of {spec.title} cancelled; what was downloaded is kept and the next download resumes it"
            self.server.log_message(outcome)
        except download.PullError as error:
            outcome = f"downloading {spec.title} failed: {error}"
            self._tell(types.MessageType.Error, outcome)
        finally:
            self._cancel = None
            progress.end(outcome or "stopped")
        return ok

    def _tell(self, level: types.MessageType, message: str) -> None:
        """Always shown: each download is something the user asked for."""
        self.server.log_message(message, level)
        self.server.call_soon(
            self.server.window_show_message, types.ShowMessageParams(type=level, message=f"Ghostpilot: {message}")
        )

    # -- ghostpilot/models ----------------------------------------------------------------

    def listing(self) -> dict[str, Any]:
        entries = load_registry()
        if self._machine is None:
            self._machine = detect_machine()
        recommendation = recommend(entries, self._machine)
        return {
            "current": self.server.settings.model,
            "modelsDir": str(models_dir()),
            "machine": self._machine.describe(),
            "recommended": recommendation.name if recommendation else None,
            "recommendationReason": recommendation.reason if recommendation else None,
            "downloading": self.busy,
            "models": [row.to_json() for row in catalog(entries, recommendation)],
        }


def setup(server: GhostpilotServer) -> None:
    offers = ModelOffers(server)
    server.worker.add_listener(offers.on_model_state)
    server.shutdown_listeners.append(offers.stop)

    @server.feature(MODELS_REQUEST)
    async def models(ls: GhostpilotServer, *args: Any) -> dict[str, Any]:
        return await asyncio.to_thread(offers.listing)
