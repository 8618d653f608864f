"""Remote engines for real: llama-server (built by scripts/build-llama-server.sh from the
llama.cpp that llama-cpp-python vendors) serving the embedded model on loopback.

Skipped with the reason where the binary is not built; under CI=true that is a failure.
The engine's own counters (``/metrics``, ``/slots``) say whether a stream that the client
closed really stopped generating there.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from lsp_server.backends.base import Cancelled, GenerationRequest, ModelUnavailable
from lsp_server.backends.registry import embedded_model_path
from lsp_server.backends.remote.backend import RemoteBackend
from lsp_server.backends.remote.settings import remote_config
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import DEFAULT_MODEL, Settings
from lsp_server.evaluation.latency import server_argv as latency_server_argv
from lsp_server.evaluation.llama_peer import find_tool, free_port
from lsp_server.evaluation.lsp_client import LspClient
from lsp_server.parsing.syntax import error_count, parse_text
from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import INLINE_CLIENT, apply_edit, inline_params, open_document

pytestmark = [pytest.mark.e2e]

PROMPT = "def fibonacci(n):\n    "
# A prompt the embedded model goes on with for hundreds of tokens (no early end of text).
ENDLESS = "PRIMES = [\n    2,\n    3,\n    5,\n    7,\n    11,\n"
SAMPLE = 'import math\n\n\ndef circle_area(radius: float) -> float:\n    """Return the area of a circle."""\n    '


def _binary() -> Path:
    exe = find_tool("llama-server", None)
    if exe is None:
        message = "llama-server is not built: run scripts/build-llama-server.sh (about 15-30 min on 2 cores)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return exe


class Engine:
    """llama-server on a fixed loopback port (so it can be killed and started again)."""

    def __init__(self, *extra: str, start: bool = True) -> None:
        self.exe = _binary()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    def start(self) -> None:
        argv = [str(self.exe), "-m", str(embedded_model_path()), "-t", "2", "-c", "2048", "-np", "1",
                "--host", "127.0.0.1", "--port", str(self.port), "--metrics", "--slots", "--swa-full", *self.extra]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (
                f"llama-server exited with {self.process.returncode}"
            )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("llama-server did not become ready in 180 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def get(self, path: str, key: str = "") -> bytes:
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {key}"} if key else {}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return bytes(reply.read())

    def predicted_total(self, key: str = "") -> int:
        found = re.search(
            rb"^llamacpp:tokens_predicted_total (\d+(?:\.\d+)?)", self.get("/metrics", key), re.M
        )
        assert found, "no llamacpp:tokens_predicted_total in /metrics"
        return int(float(found.group(1)))

    def slot(self) -> dict:  # type: ignore[type-arg]
        import json

        return json.loads(self.get("/slots"))[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    started = Engine()
    yield started
    started.kill()


def _backend(url: str, backend: str = "llama-server", **more: object) -> RemoteBackend:
    return RemoteBackend(
        remote_config(Settings(backend=backend, endpoint=url, request_timeout_ms=20000, **more))
    )  # type: ignore[arg-type]


def test_local_vocab_checked_against_tokenize_and_n_ctx_from_props(engine: Engine) -> None:
    backend = _backend(engine.url)
    try:
        assert backend.info.n_ctx == 2048
        assert backend._vocab is not None  # /props names a GGUF readable here, and it matches
        assert backend.info.fim is None  # Gemma 3 base: no FIM, as on the local path
        assert backend.tokenize(PROMPT) == backend._remote_tokenize(PROMPT)
    finally:
        backend.close()


def test_generation_reports_cache_reuse(engine: Engine) -> None:
    backend = _backend(engine.url)
    request = GenerationRequest(prompt=PROMPT, prompt_tokens=(*backend.info.bos, *backend.tokenize(PROMPT)),
                                max_tokens=16)  # fmt: skip
    first = backend.generate(request, _token())
    second = backend.generate(request, _token())
    assert first.text and first.token_count > 0 and second.text
    assert (
        second.reused_tokens >= len(request.prompt_tokens or ()) - 1
        and second.evaluated_tokens <= 1
    )
    backend.close()


def _token():  # type: ignore[no-untyped-def]
    from lsp_server.backends.base import CancelToken

    return CancelToken()


def test_superseded_request_stops_on_the_engine(engine: Engine) -> None:
    worker = ModelWorker()
    worker.load(lambda: _backend(engine.url), "llama-server").result(60)
    try:
        long = GenerationRequest(prompt=ENDLESS, max_tokens=1500)
        before = engine.predicted_total()
        outcome: list[BaseException | object] = []

        def older() -> None:
            try:
                outcome.append(worker.generate_blocking(long, key="doc"))
            except BaseException as error:  # noqa: BLE001 - recorded for the assertion
                outcome.append(error)

        thread = threading.Thread(target=older)
        thread.start()
        deadline = time.monotonic() + 30
        while engine.slot().get("next_token", [{}])[0].get("n_decoded", 0) < 5:
            assert time.monotonic() < deadline, "the engine never started generating"
            time.sleep(0.02)
        newer = worker.generate_blocking(GenerationRequest(prompt=PROMPT, max_tokens=4), key="doc")
        thread.join(30)
        assert isinstance(outcome[0], Cancelled)
        # llama-server adds a task's generated tokens to /metrics when its slot is next
        # reused: one more request flushes the newer one's.
        worker.generate_blocking(GenerationRequest(prompt=PROMPT, max_tokens=1), key="doc")
        deadline = time.monotonic() + 10  # a loaded 2-core machine needs ~2 s
        while engine.slot()["is_processing"]:
            assert time.monotonic() < deadline, "the engine is still generating"
            time.sleep(0.05)
        older_tokens = engine.predicted_total() - before - newer.token_count - 1
        assert 3 <= older_tokens < 1500 / 4, (
            f"the superseded request generated {older_tokens} tokens"
        )
    finally:
        worker.shutdown()


def test_api_key_wrong_key_is_rejected_clearly() -> None:
    keyed = Engine("--api-key", "right-key")
    try:
        settings = Settings(backend="llama-server", endpoint=keyed.url, api_key_env="GP_TEST_KEY")
        with pytest.raises(ModelUnavailable) as caught:
            RemoteBackend(remote_config(settings, {"GP_TEST_KEY": "wrong-key"}))
        message = str(caught.value)
        assert (
            "HTTP 401" in message
            and "GP_TEST_KEY was rejected" in message
            and "wrong-key" not in message
        )
        backend = RemoteBackend(remote_config(settings, {"GP_TEST_KEY": "right-key"}))
        assert (
            backend.generate(GenerationRequest(prompt=PROMPT, max_tokens=4), _token()).token_count
            > 0
        )
        backend.close()
    finally:
        keyed.kill()


def test_engine_killed_mid_stream_then_restarted() -> None:
    own = Engine()
    try:
        backend = _backend(own.url)
        errors: list[BaseException] = []

        def generate() -> None:
            try:
                backend.generate(GenerationRequest(prompt=ENDLESS, max_tokens=1500), _token())
            except BaseException as error:  # noqa: BLE001
                errors.append(error)

        thread = threading.Thread(target=generate)
        thread.start()
        deadline = time.monotonic() + 30
        while own.slot().get("next_token", [{}])[0].get("n_decoded", 0) < 5:
            assert time.monotonic() < deadline, "the engine never started generating"
            time.sleep(0.02)
        own.kill()
        thread.join(30)
        assert errors and isinstance(errors[0], ModelUnavailable), errors
        assert getattr(errors[0], "kind", "") in ("dropped", "refused"), str(errors[0])
        # Found down: requests fail at once (no connection per keystroke) until a retry is due.
        with pytest.raises(ModelUnavailable, match="connection refused|dropped"):
            backend.generate(GenerationRequest(prompt=PROMPT, max_tokens=4), _token())
        own.start()  # same port; the same backend object resumes
        assert (
            backend.generate(GenerationRequest(prompt=PROMPT, max_tokens=4), _token()).token_count
            > 0
        )
        backend.close()
    finally:
        own.kill()


def test_openai_backend_against_v1_completions(engine: Engine) -> None:
    native = _backend(engine.url)
    openai = _backend(engine.url, backend="openai")
    try:
        request = GenerationRequest(prompt=PROMPT, prompt_tokens=(*native.info.bos, *native.tokenize(PROMPT)),
                                    max_tokens=12)  # fmt: skip
        assert openai.info.n_ctx == 2048 and openai.model
        before = engine.predicted_total()
        got = openai.generate(request, _token())
        assert (
            got.text.strip()
            and got.token_count > 0
            and got.stop_reason in ("length", "eos", "stop")
        )
        openai.generate(
            GenerationRequest(prompt=PROMPT, max_tokens=1), _token()
        )  # flushes /metrics
        assert engine.predicted_total() > before
    finally:
        native.close()
        openai.close()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER_COMMAND))
async def client(lsp_client: LanguageClient, engine: Engine):  # type: ignore[no-untyped-def]
    lsp_client.set_configuration({"maxTokens": 48}, section="ghostpilot")
    options = {"backend": "llama-server", "endpoint": engine.url, "timeBudgetMs": 4000}
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=INLINE_CLIENT, initialization_options=options)
    )
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio
async def test_inline_completion_through_ghostpilot_serve(
    client: LanguageClient, engine: Engine
) -> None:
    before = engine.predicted_total()
    uri = "file:///tmp/ghostpilot-e2e/remote_area.py"
    open_document(client, uri, SAMPLE)
    result = await client.text_document_inline_completion_async(inline_params(uri, 5, 4))
    assert result is not None and len(result.items) == 1
    item = result.items[0]
    text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    assert text.strip() and item.range is not None
    merged = apply_edit(SAMPLE, (item.range.start.line, item.range.start.character),
                        (item.range.end.line, item.range.end.character), text)  # fmt: skip
    assert error_count(parse_text(merged).root_node) == 0, merged
    assert engine.predicted_total() > before  # the engine made it, not an in-process model


# -- through ghostpilot serve: an engine that is down, comes up, goes away ---------------------


def _serve(settings: dict[str, object]) -> LspClient:
    client = LspClient(latency_server_argv(), settings=settings,
                       env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    client.initialize()
    return client


class Notes:
    """Every notification the server sent, kept (LspClient.wait_for drops the others)."""

    def __init__(self, client: LspClient) -> None:
        self.client = client
        self.all: list[tuple[str, dict[str, object]]] = []

    def _drain(self, wait: float) -> None:
        try:
            _, method, params = self.client.notifications.get(timeout=wait)
        except queue.Empty:
            return
        self.all.append((method, dict(params or {})))
        while True:
            try:
                _, method, params = self.client.notifications.get_nowait()
            except queue.Empty:
                return
            self.all.append((method, dict(params or {})))

    def status(self, want: Callable[[dict[str, object]], bool], timeout: float,
               since: int = 0) -> dict[str, object]:  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            for method, params in self.all[since:]:
                if method == "ghostpilot/status" and want(params):
                    return params
            assert time.monotonic() < deadline, f"no such status in {timeout:g} s: {self.all[since:]}"
            self._drain(0.1)

    def shown(self) -> list[str]:
        """window/showMessage texts so far."""
        self._drain(0.2)
        return [str(p.get("message", "")) for m, p in self.all if m == "window/showMessage"]


def _inline(client: LspClient, uri: str, line: int, character: int) -> list[dict[str, object]]:
    answer = client.request("textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": line, "character": character},
        "context": {"triggerKind": 1}}, timeout=120)  # fmt: skip
    return list((answer or {}).get("items", [])) if isinstance(answer, dict) else list(answer or [])


def _until_suggested(client: LspClient, uri: str, timeout: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = _inline(client, uri, 5, 4)
        if items:
            return items
        time.sleep(0.3)
    raise AssertionError(f"no suggestion within {timeout:g} s")


def _open(client: LspClient, uri: str) -> None:
    client.notify("textDocument/didOpen", {"textDocument": {
        "uri": uri, "languageId": "python", "version": 1, "text": SAMPLE}})  # fmt: skip


def test_engine_started_after_the_server_then_killed_and_restarted() -> None:
    """One clear error while the engine is down, other features keep working, and
    suggestions come once it is up: no restart, no message per keystroke."""
    engine = Engine(start=False)
    client = _serve({"backend": "llama-server", "endpoint": engine.url, "maxTokens": 24,
                     "timeBudgetMs": 4000})  # fmt: skip
    uri = "file:///tmp/ghostpilot-e2e/remote_recovery.py"
    notes = Notes(client)
    try:
        error = notes.status(lambda p: p.get("state") == "error", 60)
        assert "connection refused" in str(error.get("message"))
        _open(client, uri)
        for _ in range(8):  # typing while the engine is down
            assert _inline(client, uri, 5, 4) == []
        document = client.request("ghostpilot/document", {"uri": uri})
        assert document["text"] == SAMPLE  # the rest of the server works
        refused = [m for m in notes.shown() if "connection refused" in m]
        assert len(refused) == 1, notes.shown()
        engine.start()
        before = engine.predicted_total()
        items = _until_suggested(client, uri, 60)
        assert str(items[0].get("insertText", "")).strip()
        assert engine.predicted_total() > before  # the engine made it
        engine.kill()
        assert _inline(client, uri, 5, 4) == []  # the engine died: no suggestion, no crash
        engine.start()  # back on the same port
        _until_suggested(client, uri, 60)
        refused = [m for m in notes.shown() if "connection refused" in m]
        assert len(refused) <= 2, refused  # once down at start, at most once more when killed
        assert client.process.poll() is None and not client.bad_output
    finally:
        client.close()
        engine.kill()


def test_local_fallback_serves_while_the_engine_is_down_and_says_so() -> None:
    engine = Engine(start=False)
    client = _serve({"backend": "llama-server", "endpoint": engine.url, "fallback": "local",
                     "maxTokens": 24, "timeBudgetMs": 4000})  # fmt: skip
    uri = "file:///tmp/ghostpilot-e2e/remote_fallback.py"
    notes = Notes(client)
    try:
        status = notes.status(lambda p: p.get("state") == "ready", 120)
        assert str(status.get("message", "")).startswith("local fallback: llama-server at "), status
        assert "unreachable" in str(status["message"]) and status.get("model") == DEFAULT_MODEL
        _open(client, uri)
        assert _until_suggested(client, uri, 60)  # served by the local model
        engine.start()
        before = engine.predicted_total()
        deadline = time.monotonic() + 60
        while engine.predicted_total() == before:  # back to the engine when it returns
            assert time.monotonic() < deadline, "never went back to the engine"
            _inline(client, uri, 5, 4)
            time.sleep(0.3)
        notes.status(lambda p: p.get("state") == "ready"
                     and p.get("message") == f"llama-server at {engine.url}", 10)  # fmt: skip
        mark = len(notes.all)
        engine.kill()
        _inline(client, uri, 5, 4)  # finds it gone: the local model takes over
        notes.status(lambda p: p.get("state") == "ready"
                     and str(p.get("message", "")).startswith("local fallback"), 60, since=mark)  # fmt: skip
        assert _until_suggested(client, uri, 60)
    finally:
        client.close()
        engine.kill()


def _non_loopback_address() -> str | None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this picks the outgoing address
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_plain_http_to_another_host_is_warned_once() -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    endpoint = f"http://{address}:{free_port()}"
    client = _serve({"backend": "llama-server", "endpoint": endpoint, "requestTimeoutMs": 2000})
    uri = "file:///tmp/ghostpilot-e2e/remote_plain_http.py"
    notes = Notes(client)
    try:
        notes.status(lambda p: p.get("state") == "error", 60)
        _open(client, uri)
        for _ in range(5):
            _inline(client, uri, 5, 4)
        client.notify("workspace/didChangeConfiguration", {"settings": {"ghostpilot": {
            "backend": "llama-server", "endpoint": endpoint, "requestTimeoutMs": 3000}}})  # fmt: skip
        mark = len(notes.all)
        notes.status(lambda p: p.get("state") == "loading", 60, since=mark)  # loaded again
        notes.status(lambda p: p.get("state") == "error", 60, since=mark)
        shown = notes.shown()
        warned = [m for m in shown if "unencrypted" in m]
        assert len(warned) == 1 and endpoint in warned[0], shown
    finally:
        client.close()


def test_doctor_says_whether_the_engine_answers_and_checks_its_tokenizer(engine: Engine) -> None:
    import json
    import sys

    def doctor(url: str) -> tuple[int, dict[str, object]]:
        done = subprocess.run([sys.executable, "-m", "lsp_server", "doctor", "--json", "--backend",
                               "llama-server", "--endpoint", url], capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        return done.returncode, json.loads(done.stdout)["engine"]

    code, found = doctor(engine.url)
    assert code == 0 and found["answers"] is True and found["n_ctx"] == 2048, found
    assert "tokenizes as the engine's /tokenize does" in str(found["tokenizer"]), found
    code, found = doctor(f"http://127.0.0.1:{free_port()}")
    assert code == 1 and found["answers"] is False and "connection refused" in str(found["error"])
