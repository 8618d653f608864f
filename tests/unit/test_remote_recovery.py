"""Recovering from an engine that is down: the backoff, the supervisor's retries (no
restart, no busy loop, no flicker), the ``fallback: "local"`` setting and the one-time
plain-http warning. Stand-in backends (the real engine is in
tests/e2e/test_remote_llama_server.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lsp_server.backends.base import (
    CancelToken,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ModelUnavailable,
)
from lsp_server.backends.remote.http import RemoteError
from lsp_server.backends.remote.recovery import Backoff, unreachable
from lsp_server.config import Settings, merge, needs_reload
from lsp_server.runtime import EngineSupervisor, ServingWorker

REFUSED = RemoteError("refused", "cannot reach llama-server at http://127.0.0.1:9: connection refused")


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.5, factor=2, max_s=8)
    waits = [backoff.failed(100.0) for _ in range(7)]
    assert waits == [0.5, 1, 2, 4, 8, 8, 8]
    assert not backoff.due(107.9) and backoff.due(108.0)
    backoff.succeeded()
    assert backoff.due(0.0) and backoff.failed(0.0) == 0.5


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RemoteError("refused", "x"), True),
        (RemoteError("dropped", "x"), True),
        (RemoteError("timeout", "x"), True),
        (RemoteError("http", "503 loading", 503), True),
        (RemoteError("auth", "401", 401), False),
        (RemoteError("not-found", "404", 404), False),
        (RemoteError("http", "stream error event"), False),
        (ModelUnavailable("endpoint missing"), False),
    ],
)
def test_unreachable_is_down_not_misconfigured(error: BaseException, expected: bool) -> None:
    assert unreachable(error) is expected


class Fake:
    """A backend that says which one it is."""

    def __init__(self, name: str) -> None:
        self.info = ModelInfo(name=name, path=name, fim_template=None, n_ctx=2048, n_threads=1,
                              n_gpu_layers=0)  # fmt: skip
        self.closed = False
        self.on_unreachable: Callable[[RemoteError], None] | None = None

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return [ord(c) for c in text]

    def generate(self, request: GenerationRequest, cancel: CancelToken) -> GenerationResult:
        return GenerationResult(text=self.info.name)

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Engine:
    """What the supervisor's ``build_remote`` finds: down (raises) or up."""

    def __init__(self) -> None:
        self.error: BaseException | None = REFUSED
        self.attempts = 0
        self.built: list[Fake] = []

    def __call__(self, settings: Settings) -> Any:
        self.attempts += 1
        if self.error is not None:
            raise self.error
        backend = Fake("remote")
        self.built.append(backend)
        return backend


@pytest.fixture
def rig() -> Iterator[tuple[EngineSupervisor, Engine, Clock, list[Fake], list[tuple[str, str]]]]:
    worker = ServingWorker()
    clock = Clock()
    warnings: list[tuple[str, str]] = []
    supervisor = EngineSupervisor(worker, warn=lambda key, text: warnings.append((key, text)),
                                  clock=clock)  # fmt: skip
    engine = Engine()
    locals_: list[Fake] = []

    def local(settings: Settings) -> Callable[[], Fake]:
        def factory() -> Fake:
            backend = Fake("local")
            locals_.append(backend)
            return backend

        return factory

    supervisor.build_remote = engine  # type: ignore[assignment]
    supervisor.build_local = local  # type: ignore[assignment]
    yield supervisor, engine, clock, locals_, warnings
    worker.shutdown()


def _settings(**more: Any) -> Settings:
    return Settings(backend="llama-server", endpoint="http://127.0.0.1:9", **more)


def _served_by(supervisor: EngineSupervisor) -> str:
    return supervisor.worker.generate_blocking(GenerationRequest(prompt="x")).text


def _settle(supervisor: EngineSupervisor) -> None:
    """Wait for a retry thread and the loads it queued."""
    deadline = time.monotonic() + 10
    while supervisor._probing:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert supervisor.worker.wait_loaded(10)


def test_engine_down_at_start_is_retried_by_requests_with_a_backoff(rig) -> None:  # type: ignore[no-untyped-def]
    supervisor, engine, clock, locals_, _ = rig
    states: list[str] = []
    supervisor.worker.add_listener(lambda state, message: states.append(state))
    with pytest.raises(RemoteError, match="connection refused"):
        supervisor.load(_settings()).result(10)
    assert supervisor.mode == "down" and supervisor.worker.state == "error" and not locals_
    # Many requests at once: they fail at once, and cost the engine no attempt until due.
    for _ in range(50):
        with pytest.raises(ModelUnavailable, match="connection refused"):
            _served_by(supervisor)
    assert engine.attempts == 1
    clock.now += 0.5  # the first retry is due
    with pytest.raises(ModelUnavailable):
        _served_by(supervisor)
    _settle(supervisor)
    assert engine.attempts == 2 and supervisor.mode == "down"
    assert states.count("loading") == 1  # a failed retry does not touch the status
    for _ in range(20):
        with pytest.raises(ModelUnavailable):
            _served_by(supervisor)
    assert engine.attempts == 2  # the next one waits 1 s
    engine.error = None  # the engine comes up
    clock.now += 1.0
    try:  # this request triggers the retry (served too if the retry wins the race) ...
        _served_by(supervisor)
    except ModelUnavailable:
        pass
    _settle(supervisor)
    assert _served_by(supervisor) == "remote"  # ... and the next one is served: no restart
    assert supervisor.mode == "remote" and supervisor.worker.state == "ready"
    assert engine.attempts == 3


def test_misconfiguration_is_not_retried(rig) -> None:  # type: ignore[no-untyped-def]
    supervisor, engine, clock, _, _ = rig
    engine.error = ModelUnavailable("apiKeyEnv names GP_KEY, which is not set")
    with pytest.raises(ModelUnavailable):
        supervisor.load(_settings()).result(10)
    clock.now += 100
    with pytest.raises(ModelUnavailable, match="GP_KEY"):
        _served_by(supervisor)
    _settle(supervisor)
    assert supervisor.mode == "failed" and engine.attempts == 1


def test_a_retry_that_finds_a_wrong_key_says_so_once(rig) -> None:  # type: ignore[no-untyped-def]
    supervisor, engine, clock, _, warnings = rig
    with pytest.raises(RemoteError):
        supervisor.load(_settings()).result(10)
    engine.error = RemoteError("auth", "llama-server at http://127.0.0.1:9 answered HTTP 401", 401)
    for _ in range(3):
        clock.now += 10
        with pytest.raises(ModelUnavailable):
            _served_by(supervisor)
        _settle(supervisor)
    assert [key for key, _ in warnings] == ["model:llama-server at http://127.0.0.1:9 answered HTTP 401"]


def test_no_fallback_by_default(rig) -> None:  # type: ignore[no-untyped-def]
    supervisor, _, _, locals_, _ = rig
    with pytest.raises(RemoteError):
        supervisor.load(_settings()).result(10)
    assert supervisor.worker.info is None and not locals_


def test_local_fallback_while_unreachable_then_back_to_remote(rig) -> None:  # type: ignore[no-untyped-def]
    supervisor, engine, clock, locals_, _ = rig
    messages: list[tuple[str, str]] = []
    supervisor.worker.add_listener(lambda state, message: messages.append((state, message)))
    supervisor.load(_settings(fallback="local")).result(10)
    assert supervisor.mode == "fallback" and _served_by(supervisor) == "local"
    state, message = messages[-1]
    assert state == "ready" and message.startswith("local fallback: llama-server at http://127.0.0.1:9 unreachable")
    assert supervisor.note == message  # every status says it (server.send_status)
    engine.error = None
    clock.now += 0.5
    _served_by(supervisor)  # triggers the retry
    _settle(supervisor)
    assert _served_by(supervisor) == "remote" and supervisor.mode == "remote"
    assert locals_[0].closed  # the local model's memory is given back
    assert supervisor.note == ""
    assert messages[-1] == ("ready", "llama-server at http://127.0.0.1:9")
    # The engine goes away mid-session: the local model takes over for the next request.
    backend = engine.built[-1]
    assert backend.on_unreachable is not None
    backend.on_unreachable(RemoteError("dropped", "the connection dropped"))
    supervisor.worker.wait_loaded(10)
    assert _served_by(supervisor) == "local" and supervisor.mode == "fallback"
    assert messages[-1][1].startswith("local fallback:") and backend.closed


def test_fallback_does_not_hide_a_wrong_key(rig) -> None:  # type: ignore[no-untyped-def]
    supervisor, engine, _, locals_, _ = rig
    engine.error = RemoteError("auth", "answered HTTP 401 (the key in GP_KEY was rejected)", 401)
    with pytest.raises(RemoteError, match="401"):
        supervisor.load(_settings(fallback="local")).result(10)
    assert not locals_ and supervisor.worker.state == "error"


def test_a_settings_change_drops_a_stale_retry(rig) -> None:  # type: ignore[no-untyped-def]
    supervisor, engine, clock, _, _ = rig
    with pytest.raises(RemoteError):
        supervisor.load(_settings()).result(10)
    gate = threading.Event()
    calls: list[str] = []

    def slow_first(settings: Settings) -> Any:
        calls.append(settings.endpoint)
        if len(calls) == 1:  # the retry: it reaches the engine only after the change
            gate.wait(10)
        engine.error = None
        return engine(settings)

    supervisor.build_remote = slow_first  # type: ignore[assignment]
    clock.now += 1
    thread = supervisor.retry_now()
    assert thread is not None
    while not calls:
        time.sleep(0.01)
    supervisor.load(Settings(backend="llama-server", endpoint="http://127.0.0.1:10")).result(10)
    gate.set()
    thread.join(10)
    supervisor.worker.wait_loaded(10)
    current, stale = engine.built  # the new settings loaded first; the retry finished after
    assert stale.closed and not current.closed  # the stale retry's backend is not installed
    assert supervisor.worker.generate_blocking(GenerationRequest(prompt="x")).text == "remote"
    assert supervisor.mode == "remote"


def test_plain_http_to_another_host_is_warned_once_per_endpoint(rig) -> None:  # type: ignore[no-untyped-def]
    supervisor, engine, _, _, warnings = rig
    engine.error = None
    supervisor.load(Settings(backend="llama-server", endpoint="http://10.1.2.3:8080")).result(10)
    supervisor.load(Settings(backend="llama-server", endpoint="https://10.1.2.3:8080")).result(10)
    supervisor.load(Settings(backend="llama-server", endpoint="http://127.0.0.1:8080")).result(10)
    assert len(warnings) == 1
    key, text = warnings[0]
    assert key == "plain-http:http://10.1.2.3:8080" and "leaves this machine unencrypted" in text


def test_fallback_setting() -> None:
    merged, problems = merge(Settings(), {"fallback": "local"})
    assert merged.fallback == "local" and not problems and needs_reload(Settings(), merged)
    bad, problems = merge(Settings(), {"fallback": "cloud"})
    assert bad.fallback == "none" and "expected one of none, local" in problems[0]
