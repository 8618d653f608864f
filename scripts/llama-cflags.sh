#!/usr/bin/env bash
# Compiler flags for building llama.cpp (llama-cpp-python's wheel, llama-server): on x86-64,
# no AMX kernels. llama.cpp builds with -march=native, which turns them on for Sapphire
# Rapids and later Xeons, and they segfault in the first prompt evaluation on some of these
# machines (ggml_backend_amx_mul_mat with Q4_K weights; llama.cpp issue 20824, closed without
# a fix; seen on this project's own machine). Explicit -mno-* flags win over -march=native
# in GCC and Clang, whatever their order. Prints nothing where they do not apply.
set -euo pipefail
case "$(uname -m)" in x86_64|amd64) ;; *) exit 0 ;; esac
flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
compiler="${CC:-cc}"
command -v "$compiler" >/dev/null || exit 0
# shellcheck disable=SC2086  # the flags are separate words
echo | "$compiler" $flags -x c -E - >/dev/null 2>&1 || exit 0  # an older compiler: no AMX anyway
echo "$flags"
