"""``ghostpilot doctor``: what this installation can do, and with which model, and
how the sandbox contains the code it runs (isolation, and how a run's memory is
bounded as a whole)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from lsp_server.backends.devices import (
    NO_GPU_VISIBLE,
    REBUILD_HINT,
    GpuDevice,
    gpu_devices,
    offload_plan,
)
from lsp_server.backends.gguf import GGUFError
from lsp_server.backends.registry import ModelNotFound, check_adapter, find_entry, resolve, verify
from lsp_server.config import Settings, merge, to_camel


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "doctor", help="print build features, model, threads, context, sandbox")
    parser.add_argument("--model")
    parser.add_argument("--backend", choices=("local", "llama-server", "openai", "ollama"),
                        help="a remote engine to check (see README, Remote engines)")
    parser.add_argument("--endpoint", help="the remote engine's URL")
    parser.add_argument("--remote-model", help="the engine's model name (openai, ollama)")
    parser.add_argument("--remote-tokenizer", help="registry name or GGUF of the engine's model")
    parser.add_argument("--api-key-env", help="the environment variable holding the API key")
    parser.add_argument("--n-gpu-layers", type=int,
                        help="layers to offload to a GPU (-1: all); doctor says where they would run")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def gpu_support(build_has_gpu: bool, gpus: list[GpuDevice]) -> str:
    """doctor's line on GPU offload: the build, then the devices it sees."""
    if not build_has_gpu:
        return f"not in this build (CPU only); {REBUILD_HINT}"
    if not gpus:
        return f"supported by this build, but no GPU is visible ({NO_GPU_VISIBLE})"
    return "supported; " + ", ".join(gpu.describe() for gpu in gpus)


def run(args: argparse.Namespace) -> int:
    from lsp_server.backends.llama import _import_llama, system_info
    from lsp_server.sandbox import describe

    raw = {key: value for key, value in (
        ("model", args.model), ("backend", args.backend), ("endpoint", args.endpoint),
        ("remoteModel", args.remote_model), ("remoteTokenizer", args.remote_tokenizer),
        ("apiKeyEnv", args.api_key_env), ("nGpuLayers", args.n_gpu_layers),
    ) if value not in (None, "")}  # fmt: skip
    settings, problems = merge(Settings(), raw)
    report: dict[str, object] = {"settings": to_camel(settings), "problems": problems}
    info = system_info()
    report["llama_cpp"] = info
    gpus = gpu_devices(_import_llama())
    report["gpus"] = [asdict(gpu) for gpu in gpus]
    n_layers: int | None = None
    sandbox = describe()
    report["sandbox"] = sandbox
    ok = True
    try:
        resolved = resolve(settings.model)
        checked = verify(resolved.path)
        found: dict[str, object] = {
            "name": resolved.name, "path": str(resolved.path),
            "architecture": checked.header.architecture, "sha256_ok": checked.sha_ok,
        }
        if resolved.adapter is not None:
            check_adapter(resolved)  # raises on a wrong type, architecture or sha256
            base = resolved.entry.name if resolved.entry else "?"
            found["lora_adapter"] = f"{resolved.adapter} (sha256 ok; on {base})"
        entry = resolved.entry
        if entry is not None and entry.is_derived:
            found["vocabulary"] = (f"{checked.header.vocab_size:,} tokens: {entry.derived_from} with the "
                                   f"tokens code uses ({entry.vocab})")
        wanted = find_entry(settings.model)
        if wanted is not None and wanted.is_derived and resolved.name != wanted.name:
            found["note"] = f"{wanted.name} could not be written: {resolved.name} is used (the log says why)"
        report["model"] = found
        n_layers = checked.header.block_count
    except (ModelNotFound, GGUFError) as error:
        report["model"] = {"error": str(error)}
        ok = settings.backend != "local"  # a remote engine needs no local model
    offload = offload_plan(settings.n_gpu_layers, n_layers,
                           build_has_gpu=bool(info["gpu_offload"]), devices=gpus)
    report["offload"] = asdict(offload)
    if settings.backend != "local":
        from lsp_server.backends.remote.settings import engine_report

        engine = engine_report(settings)
        report["engine"] = engine
        ok = ok and bool(engine.get("answers"))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0 if ok else 1
    features = info["features"]
    assert isinstance(features, dict)
    simd = [name for name, value in features.items() if value == "1"]
    print(f"llama-cpp-python {info['llama_cpp_python']}")
    print(f"  SIMD / CPU features: {', '.join(simd) or 'none reported'}")
    print(f"  GPU offload: {gpu_support(bool(info['gpu_offload']), gpus)}")
    if not info["extra_buffers"]:
        print("  AMX kernels built in: models load without extra buffer types (AMX crashes on some "
              "CPUs; GHOSTPILOT_LLAMA_AMX=1 keeps them; `make install` builds without AMX)")
    checked_engine = report.get("engine")
    if isinstance(checked_engine, dict):
        engine = checked_engine
        print(f"backend: {settings.backend} at {settings.endpoint or '(no endpoint)'}")
        answered = "yes" if engine.get("answers") else f"NO: {engine.get('error')}"
        print(f"  answers: {answered}")
        for key in ("warning", "api_key", "start_ms", "model", "n_ctx", "tokenizer", "fim"):
            if key in engine:
                print(f"  {key}: {engine[key]}")
        print("local model (for fallback: \"local\"):" if settings.fallback == "local" else
              "local model (not used while backend is remote):")  # fmt: skip
    print(f"model: {settings.model}")
    model = report["model"]
    assert isinstance(model, dict)
    for key, value in model.items():
        print(f"  {key}: {value}")
    adaptive = " (fewer while other programs take cores: adaptiveThreads)" if settings.adaptive_threads and settings.n_threads > 1 else ""
    print(f"threads: {settings.n_threads}{adaptive}; context: {settings.n_ctx} tokens; "
          f"GPU layers: {settings.n_gpu_layers} -> {offload.summary}")
    if offload.warning:
        print(f"warning: {offload.warning}", file=sys.stderr)
    print(f"KV cache of recently edited places: up to {settings.kv_cache_mb} MB in RAM "
          "(kvCacheMb; 0 turns it off)")
    print(f"sandbox: {sandbox['isolation']}")
    print(f"  memory bound: {sandbox['memory_bound']} ({sandbox['memory_bound_detail']})")
    print(f"  a default run: {sandbox['memory_plan']}")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0 if ok else 1
