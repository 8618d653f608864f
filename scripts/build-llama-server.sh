#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` and `llama-bench` from the llama.cpp sources
# vendored in the llama-cpp-python sdist: the same llama.cpp our backend runs.
# They are the peer for `ghostpilot bench latency` and the ceiling for
# `ghostpilot bench throughput`. Not part of CI: a build takes ~15-30 min on 2 cores.
#
# Usage: scripts/build-llama-server.sh [--force]
# Prints the directory that holds the two binaries (cached under ~/.cache/ghostpilot).
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${GHOSTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ghostpilot}"
DEST="$CACHE/llama.cpp-$VERSION"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

cflags="$(bash "$ROOT/scripts/llama-cflags.sh")"  # no AMX kernels: that script says why
# A cached build counts only if it was built with these flags (an older one may have AMX).
if [ "${1:-}" != "--force" ] && [ -x "$DEST/bin/llama-server" ] && [ -x "$DEST/bin/llama-bench" ] \
   && grep -qxF "cflags: $cflags" "$DEST/BUILD_INFO" 2>/dev/null; then
  echo "$DEST/bin"
  exit 0
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "build-llama-server: needs $tool (apt-get install cmake g++)" >&2; exit 1; }
done

sdist="$(LLAMA_CPP_PYTHON_VERSION="$VERSION" PYTHON="$PYTHON" bash "$ROOT/scripts/fetch-llama-sdist.sh")"
work="$(mktemp -d "${TMPDIR:-/tmp}/ghostpilot-llama-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
[ -f "$src/CMakeLists.txt" ] || { echo "build-llama-server: no vendored llama.cpp in the sdist" >&2; exit 1; }

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
echo "build-llama-server: configuring $src" >&2
cmake -S "$src" -B "$work/build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DCMAKE_C_FLAGS="$cflags" -DCMAKE_CXX_FLAGS="$cflags" \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON >&2
echo "build-llama-server: building llama-server and llama-bench with $JOBS jobs" >&2
cmake --build "$work/build" --target llama-server llama-bench -j "$JOBS" >&2

mkdir -p "$DEST/bin.new"
cp "$work/build/bin/llama-server" "$work/build/bin/llama-bench" "$DEST/bin.new/"
rm -rf "$DEST/bin"
mv "$DEST/bin.new" "$DEST/bin"
{ echo "llama-cpp-python $VERSION (vendored llama.cpp), built $(date -u +%FT%TZ)"; echo "cflags: $cflags"; } > "$DEST/BUILD_INFO"
echo "$DEST/bin"
