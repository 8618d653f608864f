"""A persistent ggml CPU threadpool for a llama.cpp context (llama-cpp-python never
attaches one), bound through ctypes."""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)


class Threadpool:
    """A persistent ggml CPU threadpool attached to a llama.cpp context.

    Without one, llama.cpp creates and joins a fresh pool of threads for every graph it
    computes, i.e. for every generated token; its threads do not poll between tokens.
    llama-server and llama-bench attach a pool; what it gains is measured in
    benchmarks/RESULTS.md. (On macOS/Windows the library names differ and the pool is
    skipped.)

    The binding needs no struct layout: ``ggml_threadpool_params_init`` fills an opaque
    buffer that is handed back to ``ggml_threadpool_new`` (default polling, all cores).
    """

    _PARAMS_BYTES = 4096  # ggml_threadpool_params is ~530 bytes; room for growth

    def __init__(self, llama_cpp: object, ctx: object, n_threads: int) -> None:
        folder = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")  # type: ignore[attr-defined]
        base = ctypes.CDLL(os.path.join(folder, "libggml-base.so"))
        cpu = ctypes.CDLL(os.path.join(folder, "libggml-cpu.so"))
        lib = llama_cpp.llama_cpp._lib  # type: ignore[attr-defined]
        base.ggml_threadpool_params_init.argtypes = [ctypes.c_void_p, ctypes.c_int]
        base.ggml_threadpool_params_init.restype = None
        cpu.ggml_threadpool_new.argtypes = [ctypes.c_void_p]
        cpu.ggml_threadpool_new.restype = ctypes.c_void_p
        cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
        cpu.ggml_threadpool_free.restype = None
        lib.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        lib.llama_attach_threadpool.restype = None
        lib.llama_detach_threadpool.argtypes = [ctypes.c_void_p]
        lib.llama_detach_threadpool.restype = None
        params = ctypes.create_string_buffer(self._PARAMS_BYTES)
        base.ggml_threadpool_params_init(params, n_threads)
        pool = cpu.ggml_threadpool_new(params)
        if not pool:
            raise RuntimeError("ggml_threadpool_new failed")
        self._cpu, self._lib, self._ctx, self._pool = cpu, lib, ctx, pool
        lib.llama_attach_threadpool(ctx, pool, pool)

    def close(self) -> None:
        """Detach (llama.cpp goes back to its own pools) and free the threads."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        self._lib.llama_detach_threadpool(self._ctx)
        self._cpu.ggml_threadpool_free(pool)


def attach_threadpool(llama_cpp: object, ctx: object, n_threads: int) -> Threadpool | None:
    """A pool for ``ctx``, or None where this llama.cpp build does not offer one (or
    ``GHOSTPILOT_THREADPOOL=0`` turns it off, to compare)."""
    if os.environ.get("GHOSTPILOT_THREADPOOL", "1") == "0":
        return None
    try:
        return Threadpool(llama_cpp, ctx, n_threads)
    except (OSError, AttributeError, RuntimeError) as error:
        log.info("no persistent threadpool (%s); llama.cpp makes one per token", error)
        return None
