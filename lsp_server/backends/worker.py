"""The model worker: the one owner of the loaded model.

All model work (loading, tokenizing for prompts, generation) runs on one thread, fed by a
queue, so llama.cpp is never entered twice at once and the event loop never blocks on it.
A job submitted with a ``key`` (a document URI) supersedes the previous job with the same
key: a queued one is dropped, a running one stops between tokens. A ``background`` job
(writing on a suggestion nobody waits for yet) gives way to any other job submitted after
it: it is stopped the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from lsp_server.backends.base import (
    Backend,
    Cancelled,
    CancelToken,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelUnavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Called with (state, message) on every state change: "loading", "ready", "error".
StateListener = Callable[[str, str], None]
BackendFactory = Callable[[], Backend]
SHUT_DOWN = "the model worker is shut down"


@dataclass
class _Job(Generic[T]):
    run: Callable[[Backend, CancelToken], T]
    key: str | None
    token: CancelToken = field(default_factory=CancelToken)
    future: concurrent.futures.Future[T] = field(default_factory=concurrent.futures.Future)
    needs_model: bool = True


class ModelWorker:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._latest: dict[str, CancelToken] = {}
        self._background: list[CancelToken] = []
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._current: CancelToken | None = None  # the running job's
        self._description = ""  # the loaded model's, as load() was given it
        self._closed = False
        self._listeners: list[StateListener] = []
        self.state = "unloaded"
        self.message = ""
        self.loaded = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ghostpilot-model", daemon=True)
        self._thread.start()

    # -- state --------------------------------------------------------------------------

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def _set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        for listener in self._listeners:
            try:
                listener(state, message)
            except Exception:  # a listener must never stop the worker
                log.exception("state listener failed")

    @property
    def info(self) -> ModelInfo | None:
        return self._backend.info if self._backend is not None else None

    def kv_cache_stats(self) -> dict[str, Any] | None:
        """The loaded backend's saved KV states (bound, bytes used, entries, restores);
        None for a backend without them. Counters only: safe off the worker thread."""
        return self._backend_stats("kv_cache_stats")

    def threads_stats(self) -> dict[str, Any] | None:
        """The loaded backend's thread governor (threads in use, time a token at each
        count); None where threads are fixed or the backend has none."""
        return self._backend_stats("threads_stats")

    def _backend_stats(self, name: str) -> dict[str, Any] | None:
        """A copy of what the backend's optional ``name()`` reports; None where it has no
        such method or reports nothing."""
        stats = getattr(self._backend, name, None)
        found = stats() if callable(stats) else None
        return dict(found) if found is not None else None

    # -- loading ------------------------------------------------------------------------

    def load(self, factory: BackendFactory, description: str, *,
             check: Callable[[], object] | None = None) -> concurrent.futures.Future[None]:
        """Load a model on the worker thread, replacing the current one.

        ``check`` (cheap: a name resolved, a file's header read) runs first; where it
        raises :class:`ModelUnavailable` and a model is loaded, that model stays (a typo in
        the settings must not take the working model away): the error is reported, then
        the state is "ready" again with the model that stayed."""
        self.loaded.clear()
        self._set_state("loading", description)

        def run(_: Backend | None, __: CancelToken) -> None:
            if check is not None and self._backend is not None:
                try:
                    check()
                except ModelUnavailable as error:
                    kept = self._description
                    self._set_state("error", f"{error} (still using {kept})")
                    self._set_state("ready", kept)
                    self.loaded.set()
                    raise
            previous, self._backend = self._backend, None
            if previous is not None:
                previous.close()  # free its memory and threads before the new model loads
            try:
                started = time.perf_counter()
                self._backend = factory()
                self._description = description
                log.info("loaded %s in %.2f s", description, time.perf_counter() - started)
                self._set_state("ready", description)
            except ModelUnavailable as error:
                self._set_state("error", str(error))
                raise
            except Exception as error:  # llama.cpp raises many kinds
                self._set_state("error", f"could not load {description}: {error}")
                raise ModelUnavailable(str(error)) from error
            finally:
                self.loaded.set()

        job: _Job[None] = _Job(run=run, key=None, needs_model=False)  # type: ignore[arg-type]
        with self._lock:  # queued before shutdown's end marker, or not at all
            if not self._closed:
                self._queue.put(job)
                return job.future
        self.loaded.set()
        job.future.set_exception(ModelUnavailable(SHUT_DOWN))
        return job.future

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self.loaded.wait(timeout)

    # -- jobs -----------------------------------------------------------------------------

    def submit(
        self, run: Callable[[Backend, CancelToken], T], key: str | None = None, *,
        background: bool = False,
    ) -> tuple[concurrent.futures.Future[T], CancelToken]:
        job: _Job[T] = _Job(run=run, key=key)
        with self._lock:
            if self._closed:  # nothing runs once the worker is shut down
                job.future.set_exception(Cancelled(SHUT_DOWN))
                return job.future, job.token
            # Queued under the lock: before shutdown's end marker, never after it.
            self._queue.put(job)
            previous = self._latest.get(key) if key is not None else None
            if key is not None:
                self._latest[key] = job.token
            if background:
                self._background = [t for t in self._background if not t.cancelled] + [job.token]
                yielding: list[CancelToken] = []
            else:
                yielding, self._background = self._background, []
        if previous is not None:
            previous.cancel("superseded by a newer request")
        for token in yielding:
            token.cancel("gave way to a newer job")
        return job.future, job.token

    def cancel_background(self) -> None:
        """Stop the background jobs (they stop between tokens or slices)."""
        with self._lock:
            yielding, self._background = self._background, []
        for token in yielding:
            token.cancel("gave way to a newer job")

    async def run(self, run: Callable[[Backend, CancelToken], T], key: str | None = None) -> T:
        """Run a job from the event loop; cancelling the awaiting task stops the job."""
        future, token = self.submit(run, key)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            token.cancel("request cancelled")
            raise

    def run_blocking(self, run: Callable[[Backend, CancelToken], T], key: str | None = None) -> T:
        future, _ = self.submit(run, key)
        return future.result()

    async def generate(self, request: GenerationRequest, key: str | None = None) -> GenerationResult:
        return await self.run(lambda backend, token: backend.generate(request, token), key)

    def generate_blocking(
        self, request: GenerationRequest, key: str | None = None
    ) -> GenerationResult:
        return self.run_blocking(lambda backend, token: backend.generate(request, token), key)

    def tokenize_blocking(self, text: str) -> list[int]:
        return self.run_blocking(lambda backend, _: backend.tokenize(text))

    def shutdown(self, timeout: float | None = None) -> bool:
        """Stop for good: the running job stops between tokens, queued and later jobs
        fail with :class:`Cancelled`, and the model is closed on the worker thread (so no
        thread is inside llama.cpp when the process exits: a generation running into the
        interpreter's exit crashed it). With a ``timeout``, wait up to that long for all
        this. Returns whether the worker has stopped. Safe to call again."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)  # the end marker: nothing is queued after it
            tokens = [*self._latest.values(), *self._background]
            if self._current is not None:
                tokens.append(self._current)
            self._latest, self._background = {}, []
        for token in tokens:
            token.cancel(SHUT_DOWN)
        if timeout is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._stop()
                return
            self._run(job)
            # Not held while waiting for the next job: a finished job's closure keeps its
            # document snapshot (text, bytes, tree) alive, 170 MB for a 5 MB file.
            del job

    def _stop(self) -> None:
        """On the worker thread, at shutdown's end marker: close the model. (The jobs
        queued before the marker ran first, and failed at once with Cancelled.)"""
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:  # closing is best effort; the process is ending
                log.exception("closing the model failed")
        self.state, self.message = "unloaded", SHUT_DOWN  # no listeners: the client may be gone
        log.info("model worker stopped%s", ", the model closed" if backend is not None else "")

    def _run(self, job: _Job[Any]) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        with self._lock:
            self._current = job.token
        try:
            if self._closed:
                raise Cancelled(SHUT_DOWN)
            if job.token.cancelled:
                raise Cancelled(job.token.reason)
            if job.needs_model and self._backend is None:
                raise ModelUnavailable(self.message or "no model is loaded")
            job.future.set_result(job.run(self._backend, job.token))  # type: ignore[arg-type]
        except BaseException as error:  # delivered to the awaiting side
            job.future.set_exception(error)
        finally:
            with self._lock:
                self._current = None
                if job.key is not None and self._latest.get(job.key) is job.token:
                    del self._latest[job.key]
