"""The model worker: one owner, newest request wins, cancellation between tokens.

A stand-in backend that "generates" one token per few milliseconds keeps these narrow
tests fast and deterministic; the real model is exercised end to end elsewhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import pytest

from lsp_server.backends.base import (
    Cancelled,
    CancelToken,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelUnavailable,
)
from lsp_server.backends.worker import ModelWorker


class SlowBackend:
    info = ModelInfo("stand-in", "-", None, 512, 1, 0)

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.started = threading.Event()
        self.closed = False

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(range(len(text.split())))

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        self.threads.add(threading.current_thread().name)
        self.started.set()
        text = ""
        for index in range(request.max_tokens):
            if cancel.cancelled:
                raise Cancelled(cancel.reason)
            time.sleep(0.005)
            text += f"t{index} "
        return GenerationResult(text=text, token_count=request.max_tokens)

    def close(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.closed = True


def loaded_worker() -> tuple[ModelWorker, SlowBackend]:
    backend = SlowBackend()
    worker = ModelWorker()
    worker.load(lambda: backend, "stand-in").result(timeout=5)
    return worker, backend


def test_jobs_run_on_the_one_worker_thread() -> None:
    worker, backend = loaded_worker()
    for _ in range(3):
        worker.generate_blocking(GenerationRequest(prompt="x", max_tokens=2))
    assert backend.threads == {"ghostpilot-model"}


def test_newer_request_with_same_key_stops_the_older_between_tokens() -> None:
    worker, backend = loaded_worker()
    older, _ = worker.submit(
        lambda b, token: b.generate(GenerationRequest(prompt="x", max_tokens=400), token), key="doc"
    )
    assert backend.started.wait(5)
    started = time.perf_counter()
    newer, _ = worker.submit(
        lambda b, token: b.generate(GenerationRequest(prompt="x", max_tokens=3), token), key="doc"
    )
    with pytest.raises(Cancelled, match="superseded"):
        older.result(timeout=5)
    assert newer.result(timeout=5).token_count == 3
    assert time.perf_counter() - started < 1.0  # 400 tokens would take 2 s


def test_other_keys_are_not_superseded() -> None:
    worker, _ = loaded_worker()
    first, _ = worker.submit(lambda b, t: b.generate(GenerationRequest(prompt="x", max_tokens=5), t), key="a")
    second, _ = worker.submit(lambda b, t: b.generate(GenerationRequest(prompt="x", max_tokens=5), t), key="b")
    assert first.result(timeout=5).token_count == 5
    assert second.result(timeout=5).token_count == 5


def test_cancelling_the_awaiting_task_cancels_the_job() -> None:
    worker, backend = loaded_worker()
    seen: list[CancelToken] = []

    def job(b: SlowBackend, token: CancelToken) -> GenerationResult:
        seen.append(token)
        return b.generate(GenerationRequest(prompt="x", max_tokens=400), token)

    async def scenario() -> None:
        task = asyncio.ensure_future(worker.run(job, key="doc"))
        await asyncio.get_running_loop().run_in_executor(None, backend.started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert seen and seen[0].cancelled and seen[0].reason == "request cancelled"


def test_failed_load_reports_error_and_jobs_raise_model_unavailable() -> None:
    worker = ModelWorker()
    states: list[tuple[str, str]] = []
    worker.add_listener(lambda state, message: states.append((state, message)))

    def broken() -> SlowBackend:
        raise ModelUnavailable("model file not found: /nowhere.gguf")

    with pytest.raises(ModelUnavailable):
        worker.load(broken, "/nowhere.gguf").result(timeout=5)
    assert states[-1] == ("error", "model file not found: /nowhere.gguf")
    with pytest.raises(ModelUnavailable, match="not found"):
        worker.generate_blocking(GenerationRequest(prompt="x"))


def test_loading_another_model_closes_the_previous_one_first() -> None:
    worker, first = loaded_worker()
    second = SlowBackend()
    seen_closed: list[bool] = []

    def factory() -> SlowBackend:
        seen_closed.append(first.closed)  # freed before the next model loads
        return second

    worker.load(factory, "second").result(timeout=5)
    assert seen_closed == [True] and first.threads == {"ghostpilot-model"}
    assert worker.generate_blocking(GenerationRequest(prompt="x", max_tokens=2)).token_count == 2
    assert not second.closed


def test_a_model_that_fails_its_check_leaves_the_loaded_one_in_place() -> None:
    """A typo in the model setting must not take the working model away: the check
    (name resolved, header read) runs before the loaded model is closed."""
    worker, first = loaded_worker()
    states: list[tuple[str, str]] = []
    worker.add_listener(lambda state, message: states.append((state, message)))
    built: list[str] = []

    def unknown() -> None:
        raise ModelUnavailable("unknown model 'qwen-typo'")

    with pytest.raises(ModelUnavailable, match="qwen-typo"):
        worker.load(lambda: built.append("x") or SlowBackend(), "qwen-typo",  # type: ignore[func-returns-value]
                    check=unknown).result(timeout=5)
    assert built == [] and not first.closed
    assert states == [("loading", "qwen-typo"),
                      ("error", "unknown model 'qwen-typo' (still using stand-in)"),
                      ("ready", "stand-in")]
    assert worker.state == "ready" and worker.wait_loaded(0)
    assert worker.generate_blocking(GenerationRequest(prompt="x", max_tokens=2)).token_count == 2
    second = SlowBackend()
    worker.load(lambda: second, "second", check=lambda: None).result(timeout=5)  # passes: replaced
    assert first.closed and worker.state == "ready"


def test_a_finished_job_keeps_nothing_alive_while_the_worker_waits() -> None:
    """The worker thread must not hold the last job (its closure holds a document
    snapshot) until the next one arrives."""
    import gc
    import weakref

    worker, _ = loaded_worker()

    class Snapshot:
        pass

    snapshot = Snapshot()
    alive = weakref.ref(snapshot)

    def job(backend: object, token: CancelToken, held: Snapshot = snapshot) -> int:
        return 1

    assert worker.run_blocking(job) == 1
    del job, snapshot
    deadline = time.perf_counter() + 2
    while alive() is not None and time.perf_counter() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert alive() is None


def test_shutdown_stops_the_running_job_fails_the_rest_and_closes_the_model() -> None:
    """A generation that ran into the process's exit crashed the server (llama.cpp freed
    under the worker thread): shutdown stops it, closes the model on the worker thread
    and reports whether the worker has stopped."""
    worker, backend = loaded_worker()
    running, _ = worker.submit(  # no key: only shutdown can stop it
        lambda b, token: b.generate(GenerationRequest(prompt="x", max_tokens=4000), token))
    assert backend.started.wait(5)
    queued, _ = worker.submit(
        lambda b, token: b.generate(GenerationRequest(prompt="x", max_tokens=2), token), key="doc")
    started = time.perf_counter()
    assert worker.shutdown(timeout=5) is True
    assert time.perf_counter() - started < 1.0  # 4,000 tokens would take 20 s
    for future in (running, queued):
        with pytest.raises(Cancelled, match="shut down"):
            future.result(timeout=1)
    assert backend.closed and "ghostpilot-model" in backend.threads
    later, _ = worker.submit(lambda b, token: b.tokenize("a b"))
    with pytest.raises(Cancelled, match="shut down"):
        later.result(timeout=1)  # answered at once: no thread is left to run it
    with pytest.raises(ModelUnavailable):
        worker.load(lambda: SlowBackend(), "another").result(timeout=1)
    assert worker.shutdown(timeout=1) is True  # again: nothing more to do


def test_jobs_submitted_while_the_worker_shuts_down_are_all_answered() -> None:
    """Submitting races shutdown from other threads: every job runs or fails, none is
    left in the queue behind the end marker with nobody to answer it."""
    worker, _ = loaded_worker()
    futures: list[Any] = []
    go = threading.Event()

    def submitter() -> None:
        go.wait()
        for _ in range(200):
            futures.append(worker.submit(lambda b, token: b.tokenize("a b c"))[0])

    threads = [threading.Thread(target=submitter) for _ in range(4)]
    for thread in threads:
        thread.start()
    go.set()
    time.sleep(0.001)
    assert worker.shutdown(timeout=5)
    for thread in threads:
        thread.join(5)
    done, not_done = concurrent.futures.wait(futures, timeout=5)
    assert not not_done and len(done) == 800
    assert all(f.exception() is None or isinstance(f.exception(), Cancelled) for f in done)
