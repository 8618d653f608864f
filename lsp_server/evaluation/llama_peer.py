"""llama.cpp's own tools as the yardstick: ``llama-server`` (the engine behind llama.vim
and llama.vscode) as the share-nothing latency peer, ``llama-bench`` as the machine's
ceiling. Both are built by ``scripts/build-llama-server.sh`` from the llama.cpp that
llama-cpp-python vendors, so the comparison is the same kernels."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILD_SCRIPT = "scripts/build-llama-server.sh"


def default_bin_dir() -> Path:
    cache = Path(os.environ.get("GHOSTPILOT_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ghostpilot")
    try:
        from importlib.metadata import version

        llama_version = version("llama-cpp-python")
    except Exception:
        llama_version = "0.3.36"
    return cache / f"llama.cpp-{llama_version}" / "bin"


def find_tool(name: str, bin_dir: Path | None) -> Path | None:
    for candidate in ([bin_dir / name] if bin_dir else []) + [default_bin_dir() / name]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def free_port() -> int:
    """A loopback port free now (the OS picks it; the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PeerReply:
    latency_ms: float
    prompt_n: int
    cached_n: int
    predicted_n: int
    prompt_ms: float
    predicted_ms: float
    content: str


class LlamaServer:
    """A running ``llama-server`` with one slot, the given model and threads."""

    def __init__(self, exe: Path, model: str, *, threads: int, n_ctx: int,
                 log_path: str | None = None, extra: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [str(exe), "-m", model, "-t", str(threads), "-tb", str(threads),
                "-c", str(n_ctx), "-np", "1", "-b", "512", "--host", "127.0.0.1",
                "--port", str(self.port), *extra]
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        self.argv = argv

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError("llama-server did not become ready")

    def complete(self, tokens: Sequence[int], n_predict: int) -> PeerReply:
        """Greedy completion of ``tokens`` with exactly ``n_predict`` new tokens."""
        body = json.dumps({
            "prompt": list(tokens), "n_predict": max(1, n_predict), "cache_prompt": True,
            "temperature": 0.0, "top_k": 1, "ignore_eos": True, "stream": False,
            "samplers": ["top_k"],
        }).encode()
        request = urllib.request.Request(self.url + "/completion", data=body,
                                         headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=300) as reply:
            data = json.loads(reply.read())
        latency = (time.perf_counter() - started) * 1000
        timings = data.get("timings") or {}
        return PeerReply(
            latency_ms=latency, prompt_n=int(timings.get("prompt_n", 0)),
            cached_n=int(data.get("tokens_cached", 0) or timings.get("cache_n", 0)),
            predicted_n=int(timings.get("predicted_n", 0)),
            prompt_ms=float(timings.get("prompt_ms", 0.0)),
            predicted_ms=float(timings.get("predicted_ms", 0.0)),
            content=str(data.get("content", "")))

    def rss_mb(self) -> float | None:
        return process_rss_mb(self.process.pid)

    def close(self) -> None:
        stop_server(self.process, self._log)


def stop_server(process: subprocess.Popen[bytes], log: object) -> None:
    """Terminate a tool's process (killed after 10 s) and close its log."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    close = getattr(log, "close", None)
    if close is not None:
        close()


def process_rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def llama_bench(exe: Path, model: str, *, threads: int, prompt_tokens: int = 512,
                gen_tokens: int = 128, repetitions: int = 3) -> dict[str, Any]:
    """``llama-bench``'s prompt-processing (pp) and generation (tg) tokens/s."""
    argv = [str(exe), "-m", model, "-t", str(threads), "-p", str(prompt_tokens),
            "-n", str(gen_tokens), "-r", str(repetitions), "-o", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"llama-bench failed: {done.stderr.strip()[-500:]}")
    rows = json.loads(done.stdout[done.stdout.find("["):])
    out: dict[str, Any] = {"argv": argv}
    for row in rows:
        key = "pp" if int(row.get("n_prompt", 0)) > 0 else "tg"
        out[key] = {"tokens": int(row.get("n_prompt") or row.get("n_gen")),
                    "tokens_per_s": float(row["avg_ts"]), "stddev": float(row.get("stddev_ts", 0)),
                    "build": row.get("build_commit"), "cpu": row.get("cpu_info")}
    return out
