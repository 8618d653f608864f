#!/usr/bin/env bash
# Fetch the llama-cpp-python sdist (the same one pip builds our backend from) once, and
# print the path of the cached tarball. Its vendor/llama.cpp holds the llama.cpp sources
# (scripts/build-llama-server.sh) and the vocab-only GGUFs the tests tokenise with
# (scripts/fetch-test-vocab.sh).
#
# Usage: scripts/fetch-llama-sdist.sh
# Cached under ${GHOSTPILOT_CACHE:-~/.cache/ghostpilot}/sdist; LLAMA_CPP_PYTHON_VERSION
# overrides the version (default: the one pyproject.toml pins).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINNED="$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml")"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-${PINNED:-0.3.36}}"
CACHE="${GHOSTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ghostpilot}"
DEST="$CACHE/sdist"
TARBALL="$DEST/llama_cpp_python-$VERSION.tar.gz"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

if [ -s "$TARBALL" ] && gzip -t "$TARBALL" 2>/dev/null; then
  echo "$TARBALL"
  exit 0
fi

mkdir -p "$DEST"
work="$(mktemp -d "$DEST/download.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "fetch-llama-sdist: downloading the llama-cpp-python==$VERSION sdist (about 75 MB, once)" >&2
# pip prepares the sdist's metadata: with the venv's own build backend where it has one
# (no second download), else in an isolated build environment.
if ! "$PYTHON" -m pip download --quiet --no-binary :all: --no-deps --no-build-isolation \
       "llama-cpp-python==$VERSION" -d "$work" >"$work/pip.log" 2>&1 \
   && ! "$PYTHON" -m pip download --quiet --no-binary :all: --no-deps \
       "llama-cpp-python==$VERSION" -d "$work" >>"$work/pip.log" 2>&1; then
  tail -n 5 "$work/pip.log" >&2
  echo "fetch-llama-sdist: could not download llama-cpp-python==$VERSION (sdist) from the" \
       "package index; are you offline? It is cached in $DEST once fetched." >&2
  exit 1
fi
fetched="$work/llama_cpp_python-$VERSION.tar.gz"
[ -f "$fetched" ] || { echo "fetch-llama-sdist: pip gave no $(basename "$fetched")" >&2; exit 1; }
mv "$fetched" "$TARBALL"
echo "$TARBALL"
