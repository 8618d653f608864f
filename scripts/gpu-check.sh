#!/usr/bin/env bash
# GPU offload, checked end to end on a machine with a GPU and a GPU build of
# llama-cpp-python (README, GPU): doctor, the end-to-end tests with every layer
# offloaded, then the same greedy HumanEval tasks, throughput and a typing replay on the
# CPU (nGpuLayers 0) and on the GPU (nGpuLayers -1), side by side
# (benchmarks/gpu_compare.py). Every step runs even when one fails; the exit status is 1
# if any did.
#
# Usage: scripts/gpu-check.sh [OUT]   (default artifacts/gpu-check)
#   PYTHON            the interpreter Ghostpilot is installed in (default: .venv's, else python3)
#   GPU_CHECK_TASKS   HumanEval tasks (default 20)
#   GPU_CHECK_FILE    the module the typing replay edits (default: the stdlib's ftplib.py)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT="${1:-artifacts/gpu-check}"
TASKS="${GPU_CHECK_TASKS:-20}"
FILE="${GPU_CHECK_FILE:-$("$PY" -c 'import ftplib; print(ftplib.__file__)')}"
mkdir -p "$OUT"
failed=0

step() {
  echo "=== $*" >&2
  local started=$SECONDS
  "$@" || { echo "=== FAILED (exit $?): $*" >&2; failed=1; }
  echo "=== $((SECONDS - started)) s" >&2
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
step "$PY" -m lsp_server doctor --n-gpu-layers -1
# The end-to-end tests of the server, the llama.cpp backend and its KV states, offload.
GHOSTPILOT_TEST_GPU_LAYERS=-1 step "$PY" -m pytest -q -p no:cacheprovider \
  tests/e2e/test_gpu_offload_e2e.py tests/e2e/test_server_core.py tests/e2e/test_llama_backend.py \
  tests/e2e/test_kv_snapshots.py tests/e2e/test_continuation_e2e.py \
  tests/e2e/test_held_definitions_e2e.py tests/e2e/test_start_early_e2e.py \
  tests/e2e/test_server_errors.py tests/e2e/test_docstring_e2e.py
for run in cpu:0 gpu:-1; do
  name="${run%%:*}" layers="${run#*:}"
  rm -rf "$OUT/humaneval_$name"
  step "$PY" -m lsp_server eval humaneval --limit "$TASKS" --n-gpu-layers "$layers" \
    --out "$OUT/humaneval_$name" --no-progress
done
for run in cpu:0 gpu:-1; do
  name="${run%%:*}" layers="${run#*:}"
  step "$PY" -m lsp_server bench throughput --peer off --set "nGpuLayers=$layers" \
    --out "$OUT/throughput_$name.json"
  step "$PY" -m lsp_server bench latency --file "$FILE" --functions 3 --keystrokes 240 \
    --peer off --set "nGpuLayers=$layers" --out "$OUT/latency_$name.json"
done
step "$PY" benchmarks/gpu_compare.py "$OUT" > "$OUT/compare.md"
cat "$OUT/compare.md"
exit "$failed"
