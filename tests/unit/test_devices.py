"""backends/devices.py: what an nGpuLayers setting becomes, for each build and machine."""

from __future__ import annotations

import pytest

from lsp_server.backends.devices import GpuDevice, offload_plan

H200 = GpuDevice("CUDA0", "NVIDIA H200", free_bytes=140_000 * 2**20, total_bytes=143_771 * 2**20)


def test_zero_layers_is_the_cpu_whatever_the_build() -> None:
    for build in (False, True):
        plan = offload_plan(0, 18, build_has_gpu=build, devices=[H200] if build else [])
        assert (plan.layers, plan.total, plan.device, plan.warning) == (0, 19, "CPU", "")


def test_a_cpu_only_build_asked_for_layers_warns_and_runs_on_the_cpu() -> None:
    plan = offload_plan(-1, 18, build_has_gpu=False, devices=[])
    assert (plan.layers, plan.device) == (0, "CPU")
    assert plan.warning.startswith("nGpuLayers is -1, but this llama-cpp-python build has no GPU support")
    assert "-DGGML_CUDA=on" in plan.warning


def test_a_gpu_build_that_sees_no_gpu_says_so() -> None:
    plan = offload_plan(10, 18, build_has_gpu=True, devices=[])
    assert plan.layers == 0 and "sees no GPU" in plan.warning and "CUDA_VISIBLE_DEVICES" in plan.warning


@pytest.mark.parametrize(("asked", "layers"), [(-1, 19), (5, 5), (19, 19), (100, 19)])
def test_layers_on_the_first_gpu_count_the_output_layer(asked: int, layers: int) -> None:
    plan = offload_plan(asked, 18, build_has_gpu=True, devices=[H200])
    assert (plan.layers, plan.total, plan.device, plan.warning) == (layers, 19, "CUDA0", "")
    assert plan.summary == f"{layers}/19 layers on CUDA0 (NVIDIA H200, 140,000 MiB free of 143,771)"


def test_an_unknown_layer_count_still_names_the_device() -> None:
    plan = offload_plan(-1, None, build_has_gpu=True, devices=[H200])
    assert plan.summary.startswith("all layers to CUDA0 (NVIDIA H200") and plan.warning == ""
