"""llama.cpp builds with AMX kernels crash in the first prompt evaluation on some Xeons
(ggml_backend_amx_mul_mat, Q4_K weights; seen on this project's machine): such a build
loads models without extra buffer types, and our own builds leave AMX out."""

from __future__ import annotations

import platform
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from lsp_server.backends.llama import (
    AMX_VARIABLE,
    _model_params,
    build_has_amx,
    extra_buffers_allowed,
)

ROOT = Path(__file__).resolve().parents[2]
AMX_BUILD = "CPU : SSE3 = 1 | AVX512 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | REPACK = 1 |"
PLAIN_BUILD = "CPU : SSE3 = 1 | AVX512 = 1 | LLAMAFILE = 1 | REPACK = 1 |"


def test_an_amx_build_is_told_from_its_system_info() -> None:
    assert build_has_amx(AMX_BUILD)
    assert not build_has_amx(PLAIN_BUILD)
    assert not build_has_amx("CPU : AMX_INT8 = 0 |")


def test_extra_buffers_only_without_amx_unless_the_user_asks() -> None:
    assert extra_buffers_allowed(PLAIN_BUILD, {})
    assert not extra_buffers_allowed(AMX_BUILD, {})
    assert not extra_buffers_allowed(AMX_BUILD, {AMX_VARIABLE: "yes"})
    assert extra_buffers_allowed(AMX_BUILD, {AMX_VARIABLE: "1"})


class _Params:
    use_extra_bufts = True


def _fake_llama() -> types.SimpleNamespace:
    module = types.SimpleNamespace(llama_model_default_params=_Params)
    return types.SimpleNamespace(llama_cpp=module)


def test_loading_without_extra_buffers_sets_the_parameter_and_restores_the_default() -> None:
    llama = _fake_llama()
    default = llama.llama_cpp.llama_model_default_params
    with _model_params(llama, extra_buffers=False):
        assert llama.llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert llama.llama_cpp.llama_model_default_params is default
    assert default().use_extra_bufts is True
    with _model_params(llama, extra_buffers=True):
        assert llama.llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_the_default_comes_back_when_loading_fails() -> None:
    llama = _fake_llama()
    default = llama.llama_cpp.llama_model_default_params
    with pytest.raises(RuntimeError), _model_params(llama, extra_buffers=False):
        raise RuntimeError("llama.cpp could not load the model")
    assert llama.llama_cpp.llama_model_default_params is default


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or shutil.which("cc") is None,
                    reason="the AMX flags are for x86-64 compilers")
def test_our_build_flags_turn_amx_off_even_beside_march_native() -> None:
    flags = subprocess.run(["bash", str(ROOT / "scripts" / "llama-cflags.sh")],
                           capture_output=True, text=True, check=True).stdout.split()
    assert "-mno-amx-int8" in flags and "-mno-amx-tile" in flags
    # Sapphire Rapids has AMX: -march=native would turn it on there; the flags come first
    # on llama.cpp's command lines (CMAKE_C_FLAGS), so they must win from before it.
    macros = subprocess.run(["cc", *flags, "-march=sapphirerapids", "-dM", "-E", "-x", "c", "-"],
                            input="", capture_output=True, text=True, check=True).stdout
    assert "__AMX_INT8__" not in macros and "__AMX_TILE__" not in macros
    plain = subprocess.run(["cc", "-march=sapphirerapids", "-dM", "-E", "-x", "c", "-"],
                           input="", capture_output=True, text=True, check=True).stdout
    assert "__AMX_INT8__" in plain


def test_the_makefile_and_the_llama_server_build_use_the_flags() -> None:
    assert "scripts/llama-cflags.sh" in (ROOT / "Makefile").read_text()
    script = (ROOT / "scripts" / "build-llama-server.sh").read_text()
    assert "llama-cflags.sh" in script and '-DCMAKE_C_FLAGS="$cflags"' in script
