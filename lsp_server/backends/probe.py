"""Loading an untrusted model in a child process first.

llama.cpp ends the whole process on a failed ``GGML_ASSERT`` (and a hostile file can reach
asserts that no header check foresees), so a model file that is not a registry model with
a matching sha256 is first loaded by a short-lived child: the real load path
(:class:`LlamaBackend`) plus one tiny evaluation, under a timeout. An abort there costs a
clear message, not the server.

Verdicts (and registry sha256 digests) are cached by file (path, size, mtime), the
settings that change how llama.cpp loads it and the llama-cpp-python version, in memory
and in ``$XDG_CACHE_HOME/ghostpilot/model-checks.json``, so each file is paid for once,
not at every server start (a probe is a second full load of the model).

Run as ``python -m lsp_server.backends.probe PATH ...`` it is the child.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lsp_server.backends.gguf import sha256_of
from lsp_server.backends.registry import ModelEntry

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 180.0  # a cold 7B load from a slow disk fits; the embedded model: ~2 s
PROBE_N_CTX = 256
MAX_CACHED = 256
_MARK = "ghostpilot-probe:"
_STDERR_TAIL = 8192


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""  # why the model is refused, when not ok
    seconds: float = 0.0
    # False where the check itself did not finish (a timeout): worth trying again later.
    final: bool = True


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ghostpilot" / "model-checks.json"


def _file_key(path: str | os.PathLike[str]) -> str:
    """Real path, size and mtime in ns: a file replaced or rewritten gets a new key."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    return f"{real}|{stat.st_size}|{stat.st_mtime_ns}"


def _llama_version() -> str:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return "?"


class _Store:
    """Cached digests and verdicts: a dict in memory, mirrored to a small JSON file."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Any] = {}
        self._loaded = False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._loaded = False

    def _read_file(self) -> dict[str, Any]:
        try:
            data = json.loads(cache_file().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Any:
        with self._lock:
            if not self._loaded:
                self._entries = {**self._read_file(), **self._entries}
                self._loaded = True
            return self._entries.get(key)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            merged = self._read_file()  # with other servers' entries
            for entries in (self._entries, merged):
                entries.pop(key, None)
                entries[key] = value  # newest last: the oldest are dropped first
                for old in list(entries)[: max(0, len(entries) - MAX_CACHED)]:
                    del entries[old]
            target = cache_file()
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(
                    "w", dir=target.parent, suffix=".tmp", delete=False, encoding="utf-8"
                ) as stream:
                    json.dump(merged, stream)
                os.replace(stream.name, target)
            except OSError as error:  # a read-only home: the memory cache still holds
                log.info("could not write %s: %s", target, error)


_store = _Store()


def clear_cache() -> None:
    """Forget what this process cached (the file stays)."""
    _store.clear()


def matches_registry(path: str | os.PathLike[str], entry: ModelEntry | None) -> bool:
    """Whether ``path`` is the registry's file, by sha256 (hashed once per file version)."""
    if entry is None or not entry.sha256:
        return False
    if entry.size_bytes is not None and os.path.getsize(path) != entry.size_bytes:
        return False
    key = "sha256|" + _file_key(path)
    digest = _store.get(key)
    if not isinstance(digest, str):
        digest = sha256_of(path)
        _store.put(key, digest)
    return digest == entry.sha256


_ABORT_LINE = re.compile(
    r"(?:^|\s)(?P<file>[^\s:]+\.(?:c|cc|cpp|cu|h|m)):(?P<line>\d+): (?P<what>.+)$"
)


def _failure_line(stderr: str) -> str:
    """llama.cpp's own words: the last ``file:line: message`` that ggml_abort printed."""
    found = ""
    for line in stderr.splitlines():
        match = _ABORT_LINE.search(line.strip())
        if match:
            where = f"{Path(match['file']).name}:{match['line']}"
            found = f"{match['what'].strip()} at {where}"
    return found


def _describe(path: str, returncode: int, stages: list[dict[str, object]], stderr: str) -> str:
    done = {str(stage.get("stage")) for stage in stages}
    when = "on its first evaluation" if "loaded" in done else "while loading it"
    for stage in stages:
        if stage.get("stage") == "error":
            return f"{stage.get('message')}"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        cause = _failure_line(stderr)
        return (
            f"llama.cpp crashed {when} ({name}{': ' + cause if cause else ''}); "
            f"the model file {path} is corrupt or not supported by this llama.cpp"
        )
    cause = _failure_line(stderr) or (stderr.strip().splitlines() or [""])[-1]
    return (
        f"the model check process for {path} failed {when} (exit code {returncode}"
        f"{': ' + cause if cause else ''})"
    )


def probe(
    path: str | os.PathLike[str],
    *,
    n_threads: int = 1,
    n_gpu_layers: int = 0,
    flash_attention: str = "auto",
    timeout_s: float = PROBE_TIMEOUT_S,
) -> ProbeResult:
    """Load ``path`` and evaluate a few tokens in a child process. Never raises."""
    command = [
        sys.executable, "-m", "lsp_server.backends.probe", str(path),
        "--threads", str(n_threads), "--gpu-layers", str(n_gpu_layers),
        "--flash-attention", flash_attention,
    ]  # fmt: skip
    env = {**os.environ, "GGML_NO_BACKTRACE": "1"}  # no debugger attached on abort
    started = time.perf_counter()
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
    except OSError as error:
        return ProbeResult(False, f"could not start the model check process: {error}", final=False)
    try:
        out, err = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return ProbeResult(
            False,
            f"loading {path} in a check process took longer than {timeout_s:g} s; "
            "the model was not loaded",
            time.perf_counter() - started,
            final=False,
        )
    seconds = time.perf_counter() - started
    stderr = err[-_STDERR_TAIL:].decode("utf-8", errors="replace")
    stages: list[dict[str, object]] = []
    for line in out.decode("utf-8", errors="replace").splitlines():
        if line.startswith(_MARK):
            try:
                stages.append(json.loads(line[len(_MARK) :]))
            except json.JSONDecodeError:
                continue
    if child.returncode == 0 and any(s.get("stage") == "evaluated" for s in stages):
        return ProbeResult(True, "", seconds)
    if stderr.strip():
        log.info("model check process for %s said:\n%s", path, stderr.strip())
    return ProbeResult(False, _describe(str(path), child.returncode, stages, stderr), seconds)


def vet(
    path: str | os.PathLike[str],
    entry: ModelEntry | None,
    *,
    n_threads: int,
    n_gpu_layers: int,
    flash_attention: str,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> ProbeResult:
    """OK for a registry model with a matching sha256; otherwise the (cached) probe."""
    if matches_registry(path, entry):
        return ProbeResult(True, "")
    key = f"probe|{_file_key(path)}|{n_gpu_layers}|{flash_attention}|{_llama_version()}"
    cached = _store.get(key)
    if isinstance(cached, dict):
        return ProbeResult(bool(cached.get("ok")), str(cached.get("message", "")))
    result = probe(
        path,
        n_threads=n_threads,
        n_gpu_layers=n_gpu_layers,
        flash_attention=flash_attention,
        timeout_s=timeout_s,
    )
    log.info(
        "model check of %s in a child process: %s (%.1f s)",
        path, "ok" if result.ok else result.message, result.seconds,
    )  # fmt: skip
    if result.final:
        _store.put(key, {"ok": result.ok, "message": result.message})
    return result


# -- the child ---------------------------------------------------------------------------


def _report(stage: str, **fields: object) -> None:
    sys.stdout.write(_MARK + json.dumps({"stage": stage, **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsp_server.backends.probe")
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu-layers", type=int, default=0)
    parser.add_argument("--flash-attention", default="auto")
    args = parser.parse_args(argv)

    from lsp_server.backends.base import CancelToken, GenerationRequest, ModelUnavailable
    from lsp_server.backends.llama import LlamaBackend

    try:
        backend = LlamaBackend(
            args.path,
            name=Path(args.path).name,
            n_ctx=PROBE_N_CTX,
            n_threads=args.threads,
            n_gpu_layers=args.gpu_layers,
            flash_attention=args.flash_attention,
        )
    except ModelUnavailable as error:
        _report("error", message=str(error))
        return 1
    _report("loaded")
    request = GenerationRequest(prompt="def add(a, b):\n    return", max_tokens=2)
    try:
        backend.generate(request, CancelToken())
    except Exception as error:  # llama.cpp raises many kinds
        _report("error", message=f"llama.cpp could not evaluate {args.path}: {error}")
        return 1
    _report("evaluated")
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
