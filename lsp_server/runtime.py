"""Turning settings into a loaded model: shared by the server and the CLI.

The server's model goes through :class:`EngineSupervisor`, which keeps a remote engine's
backend loaded across the engine's outages: an engine that is down at start-up, or goes
away later, is tried again by the next request after a backoff (one attempt per interval,
on a thread of its own), and suggestions resume without a restart. With ``fallback:
"local"`` the local model serves meanwhile, and the status says so.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lsp_server.backends import probe
from lsp_server.backends.base import Backend, CancelToken, ModelUnavailable
from lsp_server.backends.gguf import GGUFError, read_header
from lsp_server.backends.llama import LlamaBackend
from lsp_server.backends.registry import ModelNotFound, check_adapter, resolve
from lsp_server.backends.remote.backend import RemoteBackend, plain_http_warning
from lsp_server.backends.remote.http import RemoteError
from lsp_server.backends.remote.recovery import Backoff, unreachable
from lsp_server.backends.remote.settings import remote_backend
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.prompts.budget import PromptBudget

log = logging.getLogger(__name__)
T = TypeVar("T")
FALLBACK_PREFIX = "local fallback"


def describe(settings: Settings) -> str:
    """What the status says is loading: the model, or the engine and whether code goes
    to it unencrypted."""
    if settings.backend == "local":
        return settings.model
    warning = plain_http_warning(settings.endpoint)
    return f"{settings.backend} at {settings.endpoint}" + (f" ({warning})" if warning else "")


def fallback_description(settings: Settings, error: BaseException) -> str:
    """The status while the local model stands in for an unreachable engine."""
    return f"{FALLBACK_PREFIX}: {settings.backend} at {settings.endpoint} unreachable ({error})"


def load_model(worker: ModelWorker, settings: Settings) -> concurrent.futures.Future[None]:
    """Queue loading the configured model on the worker; errors end in the worker's state.

    The file's header is checked first; a file that is not a registry model with a
    matching sha256 is then loaded once in a child process (:mod:`.backends.probe`), so
    that a model that makes llama.cpp abort costs a message, not this process.
    A remote engine that cannot be reached is an error here: no silent fallback (the
    server's :class:`EngineSupervisor` retries it, and falls back only when asked to).
    """
    if settings.backend != "local":
        return worker.load(lambda: remote_backend(settings), describe(settings))
    # One check, run before the loaded model is closed and reused by the load (it reads
    # the header, and hashes an adapter's files).
    checked = functools.cache(functools.partial(_checked_local, settings))
    return worker.load(local_factory(settings, checked), describe(settings), check=checked)


def _checked_local(settings: Settings) -> tuple[Any, Any]:
    """The local model ``settings.model`` resolved, with its header read and its adapter
    checked; :class:`ModelUnavailable` with the reason where any of that fails."""
    try:
        resolved = resolve(settings.model)
        header = read_header(resolved.path)
        check_adapter(resolved)
    except (ModelNotFound, GGUFError) as error:
        raise ModelUnavailable(str(error)) from error
    return resolved, header


def local_factory(
    settings: Settings, checked: Callable[[], tuple[Any, Any]] | None = None
) -> Callable[[], Backend]:
    """Loads the local model ``settings.model`` (call it on the worker thread);
    ``checked`` gives :func:`_checked_local`'s result where it was already computed."""

    def factory() -> Backend:
        resolved, header = checked() if checked is not None else _checked_local(settings)
        vetted = probe.vet(
            resolved.path,
            resolved.entry,
            n_threads=settings.n_threads,
            n_gpu_layers=settings.n_gpu_layers,
            flash_attention=settings.flash_attention,
        )
        if not vetted.ok:
            raise ModelUnavailable(vetted.message)
        return LlamaBackend(
            str(resolved.path),
            name=resolved.name,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_gpu_layers=settings.n_gpu_layers,
            fim_template="auto",
            flash_attention=settings.flash_attention,
            header=header,
            lora_path=str(resolved.adapter) if resolved.adapter else None,
            adaptive_threads=settings.adaptive_threads,
        )

    return factory


def start_worker(settings: Settings) -> ModelWorker:
    """A worker with the configured model loaded (for the CLI and evaluations).

    Raises :class:`ModelUnavailable` with the reason when the model did not load.
    """
    worker = ModelWorker()
    load_model(worker, settings)
    worker.wait_loaded()
    if worker.state != "ready":
        worker.shutdown()
        raise ModelUnavailable(worker.message or "the model did not load")
    return worker


def prompt_budget(worker: ModelWorker, n_ctx: int) -> PromptBudget:
    """The loaded model's prompt budget (``n_ctx`` until one is loaded).

    It counts with the model's tokenizer through the worker, so use it from a thread:
    never on the event loop (it would wait for the model) nor inside a worker job (it
    would wait for itself). Inside a job, count with the backend's ``tokenize``.
    """
    info = worker.info
    return PromptBudget.counting(info.n_ctx if info is not None else n_ctx, worker.tokenize_blocking)


class ServingWorker(ModelWorker):
    """The server's model worker: before each job is queued, ``before_submit`` hooks run
    (the supervisor's retry of an engine that was down). A hook never blocks: a retry
    runs on a thread of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.before_submit: list[Callable[[], None]] = []

    def submit(
        self, run: Callable[[Backend, CancelToken], T], key: str | None = None, *,
        background: bool = False,
    ) -> tuple[concurrent.futures.Future[T], CancelToken]:
        for hook in () if background else self.before_submit:
            try:
                hook()
            except Exception:  # a hook must never cost a request
                log.exception("before-submit hook failed")
        return super().submit(run, key, background=background)


class EngineSupervisor:
    """Loads the server's model, and keeps a remote engine's backend loaded across the
    engine's outages.

    ``mode`` says what serves: ``local`` (``backend: local``), ``remote`` (the engine),
    ``down`` (the engine could not be reached: requests fail at once, with the error shown
    once, until a retry reaches it), ``fallback`` (``fallback: "local"`` and the engine
    unreachable: the local model serves, and the status says so) or ``failed`` (a setting
    to fix, such as a missing endpoint: no retry until the settings change).

    Retries are driven by requests (``on_request``, a :class:`ServingWorker` hook), at most
    one at a time, spaced by :class:`Backoff` (0.5 s doubling to 8 s): a retry builds the
    remote backend on a thread of its own and only a working one replaces what the worker
    holds, so a failed retry costs the user nothing, not even a status flicker.
    """

    def __init__(
        self,
        worker: ModelWorker,
        *,
        warn: Callable[[str, str], None] | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker = worker
        self.warn = warn  # (key, message): shown once per key
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.mode = "idle"
        self.settings: Settings | None = None
        self.last_error = ""
        self.fallback_note = ""  # the status message while the local model stands in
        self._generation = 0
        self._probing = False
        self._lock = threading.Lock()
        self.build_remote: Callable[[Settings], RemoteBackend] = remote_backend
        self.build_local: Callable[[Settings], Callable[[], Backend]] = local_factory
        if isinstance(worker, ServingWorker):
            worker.before_submit.append(self.on_request)

    # -- loading --------------------------------------------------------------------------

    def load(self, settings: Settings) -> concurrent.futures.Future[None]:
        """Load what ``settings`` configure; the future ends when something serves (the
        engine, or the local fallback) or with the error."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            self.settings = settings
            self.backoff.succeeded()
            self.last_error = ""
            if settings.backend == "local":
                self.mode = "local"
                return load_model(self.worker, settings)
            self.mode = "loading"
            loading = self.worker.load(self._remote_factory(settings, generation), describe(settings))
        warning = plain_http_warning(settings.endpoint)
        if warning and self.warn is not None:
            self.warn(f"plain-http:{settings.endpoint}", warning)
        result: concurrent.futures.Future[None] = concurrent.futures.Future()

        def loaded(future: concurrent.futures.Future[None]) -> None:
            error = future.exception()
            if error is None:
                self._set_mode(generation, "remote")
                result.set_result(None)
                return
            fallback = self._failed(generation, settings, error)
            if fallback is None:
                result.set_exception(error)
            else:
                _chain(fallback, result)

        loading.add_done_callback(loaded)
        return result

    def _remote_factory(self, settings: Settings, generation: int) -> Callable[[], Backend]:
        def factory() -> Backend:
            backend = self.build_remote(settings)
            backend.on_unreachable = lambda error: self._engine_lost(generation, error)
            return backend

        return factory

    def _set_mode(self, generation: int, mode: str) -> None:
        with self._lock:
            if generation == self._generation:
                self.mode = mode

    def _failed(
        self, generation: int, settings: Settings, error: BaseException
    ) -> concurrent.futures.Future[None] | None:
        """The engine could not be loaded: wait to retry, or load the local fallback
        (returns its future)."""
        with self._lock:
            if generation != self._generation:
                return None
            self.last_error = str(error)
            if not isinstance(error, RemoteError):
                self.mode = "failed"  # a setting to fix; a settings change loads again
                return None
            self.backoff.failed(self.clock())
            if settings.fallback == "local" and unreachable(error):
                self.mode = "fallback"
                self.fallback_note = fallback_description(settings, error)
                return self.worker.load(self.build_local(settings), self.fallback_note)
            self.mode = "down"
            return None

    def _engine_lost(self, generation: int, error: RemoteError) -> None:
        """The loaded engine stopped answering (called on the worker thread)."""
        with self._lock:
            settings = self.settings
            if generation != self._generation or self.mode != "remote" or settings is None:
                return
            if settings.fallback != "local":
                return  # the backend fails fast and tries again itself, with its backoff
            self.last_error = str(error)
            self.backoff.failed(self.clock())
            self.mode = "fallback"
            self.fallback_note = fallback_description(settings, error)
            log.warning("%s; the local model serves until it is back", error)
            self.worker.load(self.build_local(settings), self.fallback_note)

    @property
    def note(self) -> str:
        """What every status should say besides its own message: the local fallback."""
        return self.fallback_note if self.mode == "fallback" else ""

    # -- retries ----------------------------------------------------------------------------

    def on_request(self) -> None:
        """A request is about to be queued: if the engine was unreachable and a retry is
        due, try it on a thread (this request is served by what is loaded now)."""
        with self._lock:
            if self.mode not in ("down", "fallback") or self._probing or self.settings is None:
                return
            if not self.backoff.due(self.clock()):
                return
            self._probing = True
            generation, settings = self._generation, self.settings
        threading.Thread(
            target=self._retry, args=(generation, settings), name="ghostpilot-engine-retry",
            daemon=True,
        ).start()  # fmt: skip

    def retry_now(self) -> threading.Thread | None:
        """Try the engine again at once (tests, and a user's explicit retry)."""
        with self._lock:
            if self.mode not in ("down", "fallback") or self._probing or self.settings is None:
                return None
            self._probing = True
            generation, settings = self._generation, self.settings
        thread = threading.Thread(target=self._retry, args=(generation, settings), daemon=True)
        thread.start()
        return thread

    def _retry(self, generation: int, settings: Settings) -> None:
        try:
            backend = self._remote_factory(settings, generation)()
        except ModelUnavailable as error:
            with self._lock:
                self._probing = False
                if generation != self._generation:
                    return
                wait = self.backoff.failed(self.clock())
                changed = str(error) != self.last_error
                self.last_error = str(error)
            log.info("%s still unreachable (%s); next try in %.1f s", settings.endpoint, error, wait)
            if changed and not unreachable(error) and self.warn is not None:
                self.warn(f"model:{error}", str(error))  # e.g. up now, but the key is wrong
            return
        except Exception:  # never let a retry thread die silently
            log.exception("retrying %s failed", settings.endpoint)
            with self._lock:
                self._probing = False
                self.backoff.failed(self.clock())
            return
        with self._lock:
            self._probing = False
            if generation != self._generation:
                stale = True
            else:
                stale = False
                self.backoff.succeeded()
                self.mode = "remote"
                self.last_error = ""
                # Queued under the lock, so a settings change's load always comes after.
                self.worker.load(lambda: backend, describe(settings))
        if stale:
            backend.close()
        else:
            log.info("%s answers again: suggestions come from it", settings.endpoint)


def _chain(source: concurrent.futures.Future[Any], target: concurrent.futures.Future[None]) -> None:
    def done(future: concurrent.futures.Future[Any]) -> None:
        error = future.exception()
        if error is None:
            target.set_result(None)
        else:
            target.set_exception(error)

    source.add_done_callback(done)
