#!/usr/bin/env bash
# Build llama-cpp-python (the version pyproject.toml pins) with CUDA, for one GPU
# architecture, without a system CUDA toolkit, and install it into .venv.
#
# NVIDIA's compiler, headers and libraries come from PyPI (CUDA 13.0: nvidia-cuda-nvcc,
# -runtime, -crt, -cccl, nvidia-nvvm, nvidia-cublas); they are unpacked under the cache
# into the layout CMake expects. The wheel is cached too, so a second run installs it
# without building. At run time the CUDA runtime and cuBLAS come from the same PyPI
# packages, installed into .venv; Ghostpilot loads them before llama.cpp
# (lsp_server/backends/devices.py), so no LD_LIBRARY_PATH is needed.
#
# Usage: scripts/build-llama-cuda.sh [ARCH]
#   ARCH  the GPU's compute capability without the dot: 90 for H100/H200, 89 for the RTX 40
#         series, 86 for the RTX 30 series, 80 for A100 (default: what nvidia-smi reports)
#   PORTABLE=1  build the CPU code for any x86-64 with AVX2 rather than for this CPU (for a
#               wheel built on one machine and run on another)
# Needs: a driver for CUDA 13 (580 or later) where the model runs; about 1 GB of downloads
# and, on 2 cores, about 40 minutes the first time. With a system CUDA toolkit instead:
#   CMAKE_ARGS="-DGGML_CUDA=on" .venv/bin/pip install --force-reinstall --no-cache-dir llama-cpp-python==VERSION
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "build-llama-cuda: run \`make install\` first (no .venv)" >&2; exit 1; }
VERSION="$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml")"
CUDA="${CUDA_VERSION:-13.0}"
ARCH="${1:-}"
if [ -z "$ARCH" ] && command -v nvidia-smi >/dev/null; then
  ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')"
fi
case "$ARCH" in
  [0-9][0-9]|[0-9][0-9][0-9]|[0-9][0-9]a|[0-9][0-9][0-9]a) ;;
  *) echo "build-llama-cuda: name the GPU architecture, e.g. 90 for an H100/H200 (no GPU seen here)" >&2
     exit 2 ;;
esac
CACHE="${GHOSTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ghostpilot}"
TOOLKIT="$CACHE/cuda-$CUDA"
CU="$TOOLKIT/nvidia/cu${CUDA%%.*}"
WHEELS="$CACHE/wheels/llama-cpp-python-$VERSION-cuda$CUDA-sm$ARCH${PORTABLE:+-portable}"

# 1. The toolkit, from PyPI, once.
if [ ! -x "$CU/bin/nvcc" ]; then
  echo "build-llama-cuda: downloading the CUDA $CUDA compiler and libraries from PyPI (about 1 GB, once)" >&2
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$download" \
    "nvidia-cuda-nvcc==$CUDA.*" "nvidia-cuda-runtime==$CUDA.*" "nvidia-cuda-crt==$CUDA.*" \
    "nvidia-cuda-cccl==$CUDA.*" "nvidia-nvvm==$CUDA.*" "nvidia-cublas==$CUDA.*"
  rm -rf "$TOOLKIT.partial" && mkdir -p "$TOOLKIT.partial"
  for wheel in "$download"/*.whl; do
    "$PY" -m zipfile -e "$wheel" "$TOOLKIT.partial"
  done
  chmod +x "$TOOLKIT.partial"/nvidia/cu*/bin/* "$TOOLKIT.partial"/nvidia/cu*/nvvm/bin/*
  (cd "$TOOLKIT.partial"/nvidia/cu*/lib
   for lib in libcudart libcublas libcublasLt; do ln -sf "$lib.so.${CUDA%%.*}" "$lib.so"; done
   cd .. && ln -sfn lib lib64)
  rm -rf "$TOOLKIT" && mv "$TOOLKIT.partial" "$TOOLKIT"
fi
"$CU/bin/nvcc" --version | tail -n 1 >&2

# 2. The wheel, once per version, CUDA version and architecture.
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  SDIST="$(bash "$ROOT/scripts/fetch-llama-sdist.sh")"
  cflags="$(bash "$ROOT/scripts/llama-cflags.sh")"
  args="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$ARCH -DCMAKE_CUDA_COMPILER=$CU/bin/nvcc"
  args+=" -DCUDAToolkit_ROOT=$CU -DGGML_CUDA_NO_VMM=ON"  # VMM links libcuda, which PyPI lacks
  [ -n "${PORTABLE:-}" ] && args+=" -DGGML_NATIVE=OFF"
  [ -n "$cflags" ] && args+=" -DCMAKE_C_FLAGS='$cflags' -DCMAKE_CXX_FLAGS='$cflags'"
  echo "build-llama-cuda: building llama-cpp-python $VERSION for sm_$ARCH (CMAKE_ARGS: $args)" >&2
  mkdir -p "$WHEELS.partial"
  PATH="$CU/bin:$PATH" CUDACXX="$CU/bin/nvcc" CUDA_PATH="$CU" CMAKE_ARGS="$args" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    "$PY" -m pip wheel --no-deps --no-cache-dir -w "$WHEELS.partial" "$SDIST"
  rm -rf "$WHEELS" && mv "$WHEELS.partial" "$WHEELS"
fi

# 3. Into .venv: the wheel, and the CUDA runtime and cuBLAS it loads.
"$PY" -m pip install --quiet --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-*.whl
"$PY" -m pip install --quiet "nvidia-cuda-runtime==$CUDA.*" "nvidia-cublas==$CUDA.*"
echo "build-llama-cuda: installed; \`.venv/bin/ghostpilot doctor --n-gpu-layers -1\` says where the layers run" >&2
