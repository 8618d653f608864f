"""Loading untrusted models in a child process first: a model that makes llama.cpp abort
costs a clear message, not the process that asked for it.

The crashing model is the real embedded model with one norm weight's type changed from F32
to I32 (same size, so the file stays well-formed): every header check passes, llama.cpp
loads it, then aborts on the first evaluation. No header check could catch every such
case; the child process does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.backends import probe
from lsp_server.backends.gguf import read_header
from lsp_server.backends.registry import find_entry
from lsp_server.backends.worker import ModelWorker
from lsp_server.config import Settings
from lsp_server.runtime import load_model
from tests.hostile_gguf import I32_TYPE, patched

pytest.importorskip("llama_cpp")

THREADS = 2


@pytest.fixture(scope="module")
def crashing_model(tmp_path_factory: pytest.TempPathFactory, embedded_model_path: Path) -> Path:
    target = tmp_path_factory.mktemp("crash") / "norm-as-i32.gguf"
    return patched(
        embedded_model_path, target, tensor_types={"blk.0.attn_norm.weight": I32_TYPE}, sparse=False
    )


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    probe.clear_cache()


def test_crashing_model_passes_every_header_check(crashing_model: Path) -> None:
    header = read_header(crashing_model)
    assert header.tensor_count > 0 and header.architecture == "gemma3"


def test_probe_turns_an_abort_into_a_message(crashing_model: Path) -> None:
    result = probe.probe(crashing_model, n_threads=THREADS)
    assert not result.ok
    # llama.cpp's own words and where it gave up, e.g. "binary_op: unsupported types: ...
    # at binary-ops.cpp:135".
    assert re.match(
        r"llama.cpp crashed on its first evaluation \(SIGABRT: .+ at [\w-]+\.cpp:\d+\); ",
        result.message,
    ), result.message
    assert f"the model file {crashing_model} is corrupt or not supported" in result.message
    print(f"probe of the crashing model: {result.seconds:.2f} s; {result.message}")


@pytest.mark.parametrize(
    ("stderr", "cause"),
    [
        pytest.param(
            "llama_kv_cache_iswa: using full-size SWA cache (ref: https://github.com/x)\n"
            "/tmp/b/vendor/llama.cpp/ggml/src/ggml-cpu/ops.cpp:4132: GGML_ASSERT(eps >= 0.0f) failed\n",
            "GGML_ASSERT(eps >= 0.0f) failed at ops.cpp:4132",
            id="assert",
        ),
        pytest.param(
            "/v/ggml/src/ggml-cpu/binary-ops.cpp:135: binary_op: unsupported types: dst: f32\n",
            "binary_op: unsupported types: dst: f32 at binary-ops.cpp:135",
            id="abort-with-message",
        ),
        pytest.param("load_tensors: loading model tensors\n", "", id="nothing-said"),
    ],
)
def test_failure_line_quotes_llama_cpp(stderr: str, cause: str) -> None:
    assert probe._failure_line(stderr) == cause


def test_probe_passes_the_embedded_model(embedded_model_path: Path) -> None:
    result = probe.probe(embedded_model_path, n_threads=THREADS)
    assert result.ok, result.message
    print(f"probe of the embedded model: {result.seconds:.2f} s")


def test_probe_reports_a_header_error_in_the_child(tmp_path: Path, embedded_model_path: Path) -> None:
    hostile = patched(embedded_model_path, tmp_path / "eps.gguf", {"gemma3.block_count": 1000})
    result = probe.probe(hostile, n_threads=THREADS)
    assert not result.ok
    assert "gemma3.block_count = 1000 is out of range" in result.message


def test_probe_timeout_is_a_message_and_not_cached(
    embedded_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vet(timeout_s: float) -> probe.ProbeResult:
        return probe.vet(
            embedded_model_path, None, n_threads=THREADS, n_gpu_layers=0,
            flash_attention="auto", timeout_s=timeout_s,
        )  # fmt: skip

    result = vet(0.01)
    assert not result.ok
    assert result.message == (
        f"loading {embedded_model_path} in a check process took longer than 0.01 s; "
        "the model was not loaded"
    )
    calls: list[object] = []
    real_probe = probe.probe
    monkeypatch.setattr(probe, "probe", lambda *a, **k: calls.append(a) or real_probe(*a, **k))
    assert vet(probe.PROBE_TIMEOUT_S).ok  # checked again, not the cached timeout
    assert len(calls) == 1


def test_registry_model_with_matching_sha256_is_not_probed(
    embedded_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_probe(*args: object, **kwargs: object) -> probe.ProbeResult:
        raise AssertionError("a verified registry model was probed")

    monkeypatch.setattr(probe, "probe", no_probe)
    entry = find_entry("gemma3-270m")
    result = probe.vet(
        embedded_model_path, entry, n_threads=THREADS, n_gpu_layers=0, flash_attention="auto"
    )
    assert result.ok


def test_verdicts_are_cached_by_path_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF stand-in")
    calls: list[str] = []

    def fake_probe(path: object, **kwargs: object) -> probe.ProbeResult:
        calls.append(str(path))
        return probe.ProbeResult(False, f"refused #{len(calls)}")

    monkeypatch.setattr(probe, "probe", fake_probe)

    def vet(flash: str = "auto") -> str:
        return probe.vet(model, None, n_threads=1, n_gpu_layers=0, flash_attention=flash).message

    assert (vet(), vet()) == ("refused #1", "refused #1")
    probe.clear_cache()  # a new server process: the verdict is read back from the file
    assert vet() == "refused #1"
    assert vet("off") == "refused #2"  # loads differently: checked again
    os.utime(model, ns=(1, 1))  # the file changed: checked again
    assert vet() == "refused #3"
    assert len(calls) == 3
    assert probe.cache_file().is_file()


def test_cache_file_stays_bounded_and_survives_garbage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe.cache_file().parent.mkdir(parents=True)
    probe.cache_file().write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(probe, "probe", lambda *a, **k: probe.ProbeResult(True))
    monkeypatch.setattr(probe, "MAX_CACHED", 3)
    for index in range(5):
        model = tmp_path / f"m{index}.gguf"
        model.write_bytes(b"x")
        assert probe.vet(model, None, n_threads=1, n_gpu_layers=0, flash_attention="auto").ok
    cached = json.loads(probe.cache_file().read_text(encoding="utf-8"))
    assert [key.split("|")[1].rsplit("/", 1)[1] for key in cached] == ["m2.gguf", "m3.gguf", "m4.gguf"]


def test_worker_survives_a_crashing_model_then_loads_a_good_one(crashing_model: Path) -> None:
    worker = ModelWorker()
    try:
        failed = load_model(worker, Settings(model=str(crashing_model), n_threads=THREADS))
        with pytest.raises(Exception, match="llama.cpp crashed on its first evaluation"):
            failed.result(timeout=300)
        assert worker.state == "error"
        assert "llama.cpp crashed" in worker.message
        load_model(worker, Settings(n_threads=THREADS)).result(timeout=300)
        assert worker.state == "ready"
        assert worker.tokenize_blocking("def f():")
    finally:
        worker.shutdown()


def test_worker_refuses_a_hostile_header_without_a_child_process(
    tmp_path: Path, embedded_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_probe(*args: object, **kwargs: object) -> probe.ProbeResult:
        raise AssertionError("the header check should have refused it first")

    monkeypatch.setattr(probe, "probe", no_probe)
    hostile = patched(
        embedded_model_path, tmp_path / "eps.gguf", {"gemma3.attention.layer_norm_rms_epsilon": -1.0}
    )
    worker = ModelWorker()
    try:
        with pytest.raises(Exception, match="layer_norm_rms_epsilon = -1"):
            load_model(worker, Settings(model=str(hostile), n_threads=THREADS)).result(timeout=60)
        assert worker.state == "error"
        assert "gemma3.attention.layer_norm_rms_epsilon = -1 " in worker.message
    finally:
        worker.shutdown()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lsp_server", *args], capture_output=True, text=True, check=False
    )


def test_models_verify_refuses_a_hostile_header(tmp_path: Path, embedded_model_path: Path) -> None:
    hostile = patched(
        embedded_model_path, tmp_path / "eps.gguf", {"gemma3.attention.layer_norm_rms_epsilon": -1.0}
    )
    result = run_cli("models", "verify", str(hostile))
    assert result.returncode == 1
    assert "gemma3.attention.layer_norm_rms_epsilon = -1 " in result.stderr
    assert result.stdout == ""


def test_models_verify_load_catches_what_headers_cannot(crashing_model: Path) -> None:
    header_only = run_cli("models", "verify", str(crashing_model))
    assert header_only.returncode == 0, header_only.stderr
    loaded = run_cli("models", "verify", "--load", str(crashing_model))
    assert loaded.returncode == 1
    assert "llama.cpp crashed on its first evaluation (SIGABRT" in loaded.stderr
