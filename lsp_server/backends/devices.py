"""Where a local model's layers run: the GPUs this llama.cpp build can see, and what an
``nGpuLayers`` setting becomes on them.

:func:`offload_plan` is pure: the build's GPU support, the devices and the model's layer
count in, one :class:`Offload` out, with the sentence that ``doctor``, the log and the
editor show. :func:`gpu_devices` asks ggml's device registry (through ctypes: the
llama-cpp-python bindings do not wrap it) which devices the build registered.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# ggml_backend_dev_type (ggml-backend.h): the kinds that hold a model's layers.
_DEVICE_GPU, _DEVICE_IGPU = 1, 2

# Why a GPU build can see no GPU (doctor's line and the server's warning).
NO_GPU_VISIBLE = "no driver, or CUDA_VISIBLE_DEVICES hides it"
REBUILD_HINT = ('to offload, rebuild llama-cpp-python with CMAKE_ARGS="-DGGML_CUDA=on" '
                '(or "-DGGML_METAL=on"), as the README\'s GPU section shows')  # fmt: skip


@dataclass(frozen=True)
class GpuDevice:
    name: str  # ggml's name: CUDA0, Metal, Vulkan0
    description: str  # the driver's: NVIDIA H200
    free_bytes: int
    total_bytes: int

    def describe(self) -> str:
        memory = f"{self.free_bytes / 2**20:,.0f} MiB free of {self.total_bytes / 2**20:,.0f}"
        return f"{self.name} ({self.description}, {memory})"


@dataclass(frozen=True)
class Offload:
    """What ``nGpuLayers`` became: ``layers`` of ``total`` offloaded to ``device``.

    ``warning`` is set where the setting asked for layers on a GPU that cannot take them
    (a CPU-only build, no visible device): the model then runs on the CPU, and the
    server says so once."""

    layers: int
    total: int
    device: str
    summary: str
    warning: str = ""


def offload_plan(n_gpu_layers: int, n_layers: int | None, *, build_has_gpu: bool,
                 devices: list[GpuDevice]) -> Offload:
    """What llama.cpp does with ``n_gpu_layers`` (-1: all) for a model of ``n_layers``
    repeating blocks: it counts the output layer as one more, and offloads
    ``min(n_gpu_layers, n_layers + 1)`` layers, all of them for -1, to the first GPU."""
    total = n_layers + 1 if n_layers is not None else 0
    asked = "all" if n_gpu_layers < 0 else str(n_gpu_layers)
    if n_gpu_layers == 0:
        return Offload(0, total, "CPU", "CPU only (nGpuLayers 0)")
    if not build_has_gpu:
        warning = (f"nGpuLayers is {n_gpu_layers}, but this llama-cpp-python build has no GPU "
                   f"support: the model runs on the CPU; {REBUILD_HINT}")
        return Offload(0, total, "CPU", "CPU only (this build has no GPU support)", warning)
    if not devices:
        warning = (f"nGpuLayers is {n_gpu_layers}, but this GPU build of llama-cpp-python sees "
                   f"no GPU ({NO_GPU_VISIBLE}): the model runs on the CPU")
        return Offload(0, total, "CPU", "CPU only (no GPU visible)", warning)
    device = devices[0]
    if total == 0:  # the layer count is not known (a header without block_count)
        return Offload(0, 0, device.name, f"{asked} layers to {device.describe()}")
    layers = total if n_gpu_layers < 0 else min(n_gpu_layers, total)
    return Offload(layers, total, device.name,
                   f"{layers}/{total} layers on {device.describe()}")


_SIZE_P = ctypes.POINTER(ctypes.c_size_t)
# The registry functions used here, with their signatures (ggml-backend.h).
_SIGNATURES: dict[str, tuple[list[Any], Any]] = {
    "ggml_backend_reg_count": ([], ctypes.c_size_t),
    "ggml_backend_reg_get": ([ctypes.c_size_t], ctypes.c_void_p),
    "ggml_backend_reg_name": ([ctypes.c_void_p], ctypes.c_char_p),
    "ggml_backend_dev_count": ([], ctypes.c_size_t),
    "ggml_backend_dev_get": ([ctypes.c_size_t], ctypes.c_void_p),
    "ggml_backend_dev_name": ([ctypes.c_void_p], ctypes.c_char_p),
    "ggml_backend_dev_description": ([ctypes.c_void_p], ctypes.c_char_p),
    "ggml_backend_dev_type": ([ctypes.c_void_p], ctypes.c_int),
    "ggml_backend_dev_memory": ([ctypes.c_void_p, _SIZE_P, _SIZE_P], None),
}


@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    """The ggml library llama-cpp-python loaded, its registry functions declared; None
    where it cannot be loaded or lacks them (an older ggml)."""
    try:
        from llama_cpp import _ggml

        lib = _ggml.libggml
        for name, (arguments, result) in _SIGNATURES.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = arguments, result
    except (ImportError, AttributeError, OSError) as error:
        log.info("ggml's device registry cannot be read: %s", error)
        return None
    return lib


def _text(value: bytes | None, default: str = "") -> str:
    """A C string from ggml, as text."""
    return (value or default.encode()).decode("utf-8", "replace")


# Backends in ggml's registry that are not GPUs.
_NOT_GPU_BACKENDS = frozenset({"CPU", "BLAS", "RPC"})


def gpu_backends() -> list[str]:
    """The GPU backends this build registered (CUDA, Metal, Vulkan, ...), whether or not
    they found a device: a CUDA build on a machine without a driver still lists CUDA.
    [] for a CPU-only build, or where the registry cannot be read."""
    lib = _registry()
    if lib is None:
        return []
    names = []
    for index in range(lib.ggml_backend_reg_count()):
        registered = lib.ggml_backend_reg_get(index)
        name = _text(lib.ggml_backend_reg_name(registered))
        if registered and name and name not in _NOT_GPU_BACKENDS:
            names.append(name)
    return names


def gpu_build(llama_cpp: Any) -> bool:
    """Whether this build has a GPU backend: llama.cpp's own answer, which is False where
    the backend found no device, or a GPU backend in ggml's registry."""
    return bool(llama_cpp.llama_supports_gpu_offload() or gpu_backends())


def gpu_devices(llama_cpp: Any) -> list[GpuDevice]:
    """The GPUs (dedicated or integrated) in ggml's device registry; [] for a CPU-only
    build, or where the registry cannot be read. The first call initialises the GPU
    backend (a CUDA build: about a second)."""
    if not llama_cpp.llama_supports_gpu_offload():  # no GPU backend found a device
        return []
    lib = _registry()
    if lib is None:
        return []
    found = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        if not device or lib.ggml_backend_dev_type(device) not in (_DEVICE_GPU, _DEVICE_IGPU):
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        found.append(GpuDevice(
            name=_text(lib.ggml_backend_dev_name(device), "?"),
            description=_text(lib.ggml_backend_dev_description(device), "?"),
            free_bytes=free.value, total_bytes=total.value,
        ))  # fmt: skip
    return found


# The CUDA libraries a GPU build of llama.cpp links, in the order they depend on each other.
_CUDA_LIBRARIES = ("libcudart", "libcublasLt", "libcublas")


def _package_dirs(name: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


@functools.lru_cache(maxsize=1)
def preload_cuda_libraries() -> tuple[str, ...]:
    """Load the CUDA runtime and cuBLAS that a CUDA build of llama-cpp-python needs from
    NVIDIA's PyPI packages (``nvidia-cuda-runtime``, ``nvidia-cublas``), where they are
    installed, before llama.cpp is: its libraries then find them without LD_LIBRARY_PATH
    (scripts/build-llama-cuda.sh installs them). Nothing happens for a build without CUDA,
    and nothing fails here: a library still missing is llama-cpp-python's import error.
    Once per process; returns the files loaded."""
    cuda = next((d / "lib" / "libggml-cuda.so" for d in _package_dirs("llama_cpp")
                 if (d / "lib" / "libggml-cuda.so").is_file()), None)  # fmt: skip
    if cuda is None:
        return ()
    try:  # the sonames it was linked against: libcudart.so.13, ...
        needed = set(re.findall(rb"(libcu(?:dart|blasLt|blas)\.so\.\d+)\x00", cuda.read_bytes()))
    except OSError:
        return ()
    loaded = []
    for library in _CUDA_LIBRARIES:
        soname = next((n.decode() for n in needed if n.decode().startswith(library + ".so.")), None)
        if soname is None:
            continue
        for base in _package_dirs("nvidia"):
            candidates = sorted(base.glob(f"*/lib/{soname}"))
            if not candidates:
                continue
            try:
                ctypes.CDLL(str(candidates[0]), mode=ctypes.RTLD_GLOBAL)
                loaded.append(str(candidates[0]))
            except OSError as error:
                log.warning("could not load %s: %s", candidates[0], error)
            break
    return tuple(loaded)
