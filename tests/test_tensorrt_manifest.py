"""What a TensorRT engine bundle records and refuses, checked on plain data."""

from __future__ import annotations

import json

import pytest

from edgemoe.core.errors import BundleError
from edgemoe.engines.tensorrt.manifest import (
    build_failure_hint, check_environment, check_io, cuda_version_string, dla_placement,
    environment_mismatches, jetpack_for, numpy_dtype_name, parse_l4t_release, parser_errors,
)

ORIN = {"tensorrt": "10.3.0.30", "compute_capability": "8.7", "gpu": "Orin", "cuda_runtime": "12.6",
        "sm_count": 16, "module": "NVIDIA Jetson AGX Orin Developer Kit"}


def test_the_same_device_passes() -> None:
    check_environment(ORIN, dict(ORIN, cuda_driver="12.6"))


def test_another_tensorrt_is_refused_naming_both_versions_and_the_fix() -> None:
    with pytest.raises(BundleError) as err:
        check_environment(ORIN, dict(ORIN, tensorrt="10.7.0.23"))
    message = str(err.value)
    assert "built with 10.3.0.30, this device has 10.7.0.23" in message
    assert "edgemoe build BUNDLE --target PROFILE --out ENGINES" in message


def test_another_gpu_is_refused() -> None:
    here = dict(ORIN, gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    problems = environment_mismatches(ORIN, here)
    assert problems == ["compute_capability: built with 8.7, this device has 9.0",
                        "gpu: built with Orin, this device has NVIDIA H100 80GB HBM3"]


def test_a_manifest_without_versions_is_refused() -> None:
    with pytest.raises(BundleError, match="tensorrt: not recorded"):
        check_environment({"gpu": "Orin", "compute_capability": "8.7"}, ORIN)


def test_engine_tensors_must_match_the_manifest() -> None:
    io = {"tokens": ("input", "float32"), "delta": ("output", "float32")}
    check_io("expert[0]", io, dict(io))
    with pytest.raises(BundleError, match=r"engine 'expert\[0\]'.*another build"):
        check_io("expert[0]", io, {"tokens": ("input", "float32"), "scores": ("output", "float32")})
    with pytest.raises(BundleError, match="float16"):
        check_io("gate", {"tokens": ("input", "float16")}, {"tokens": ("input", "float32")})


def test_l4t_release_and_jetpack() -> None:
    text = "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13"
    assert parse_l4t_release(text) == "36.4.0"
    assert jetpack_for("36.4.0") == "6.1/6.2"
    assert jetpack_for("36.3.0") == "6.0"
    assert parse_l4t_release("not a jetson") is None and jetpack_for(None) is None


def test_cuda_versions_and_dtypes() -> None:
    assert cuda_version_string(12060) == "12.6" and cuda_version_string(13000) == "13.0"
    assert numpy_dtype_name("HALF") == "float16" and numpy_dtype_name("FLOAT") == "float32"
    assert numpy_dtype_name("INT8") == "int8"


def test_dla_placement_counts_foreign_nodes_and_names_fallbacks() -> None:
    info = json.dumps({"Layers": [
        {"Name": "frame to nvm", "LayerType": "Reformat"},
        {"Name": "{ForeignNode[/conv1/Conv.../relu2/Relu]}", "LayerType": "DLA"},
        {"Name": "/pool/GlobalAveragePool", "LayerType": "Reduce"},
    ]})
    log = ["[WARNING] Layer '/pool/GlobalAveragePool' (REDUCE): Unsupported on DLA. Switching this layer's "
           "device type to GPU.",
           "[WARNING] Default DLA is enabled but layer /proj/MatMul is not supported on DLA, falling back to GPU.",
           "[INFO] unrelated"]
    report = dla_placement(info, log)
    assert report == {"dla_layers": ["{ForeignNode[/conv1/Conv.../relu2/Relu]}"], "gpu_layers": 2,
                      "fell_back_to_gpu": ["/pool/GlobalAveragePool", "/proj/MatMul"]}


def test_dla_placement_without_inspector_output() -> None:
    assert dla_placement("", []) == {"dla_layers": [], "gpu_layers": 0, "fell_back_to_gpu": []}


def test_parser_errors_name_the_node() -> None:
    text = parser_errors([{"node": 7, "node_name": "/expert/Add", "operator": "Add",
                           "desc": "only activation types allowed as input to this layer"},
                          {"node": 3, "desc": "unsupported datatype"}])
    assert text == ("node '/expert/Add' (Add): only activation types allowed as input to this layer; "
                    "node #3: unsupported datatype")


@pytest.mark.parametrize("log, hint", [
    (["[ERROR] Requested amount of GPU memory could not be allocated: out of memory"], "workspace_mb"),
    (["[ERROR] Could not find any implementation for node /gate/MatMul"], "precision: fp16"),
    (["[ERROR] something"], "EDGEMOE_TRT_VERBOSE=1"),
])
def test_failed_builds_get_a_hint(log: list[str], hint: str) -> None:
    assert hint in build_failure_hint(log)


def test_another_orin_module_is_refused() -> None:
    """Every Orin module reports GPU 'Orin' at SM 8.7: the SM count and the module tell them apart."""
    nano = dict(ORIN, sm_count=8, module="NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super")
    assert environment_mismatches(ORIN, nano) == [
        "sm_count: built with 16, this device has 8",
        f"module: built with {ORIN['module']}, this device has {nano['module']}",
    ]
    x86 = {"tensorrt": "10.13.0.35", "compute_capability": "8.6", "gpu": "NVIDIA RTX A4000", "sm_count": 48,
           "module": None}
    assert environment_mismatches(x86, dict(x86)) == []  # no module off Jetson, on both sides
