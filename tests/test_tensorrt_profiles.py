"""What the TensorRT builder asks for, decided without TensorRT: target profiles, optimisation
profiles per dynamic dim, static stages, DLA choice, precision flags per TensorRT version, and
which ONNX variant each stage is built from."""

from __future__ import annotations

import pytest

from edgemoe.core.engine import TensorSpec
from edgemoe.core.errors import BundleError, ConfigError
from edgemoe.core.manifest import StageEntry
from edgemoe.engines.backend import get_backend
from edgemoe.engines.build import choose_precision
from edgemoe.engines.target import TrtOptions, load_target
from edgemoe.engines.tensorrt.profiles import (
    dla_flags, dla_skipped, is_static, on_dla, precision_flags, shape_ranges, uses_strong_typing,
)

MAX = {"batch": 8, "tokens": 128}
TOKENS = (TensorSpec("tokens", ("tokens", 32)),)
FRAME = (TensorSpec("frame", ("batch", 3, 16, 16)),)


@pytest.mark.parametrize("name", ["jetson-orin-nano", "jetson-agx-orin", "jetson-agx-orin-dla", "jetson-thor", "x86-gpu"])
def test_device_profiles_load_and_use_tensorrt(name: str) -> None:
    target = load_target(name)
    assert target.backend == "tensorrt" and target.precision == "auto"
    assert target.tensorrt.strongly_typed
    assert set(target.tensorrt.opt) <= {"batch", "tokens"}
    assert 1 <= target.tensorrt.opt.get("batch", 1) <= target.max_batch


def test_only_the_opt_in_dla_profile_uses_a_dla() -> None:
    """The DLA is off the latency path: GELU/LayerNorm encoders would mostly fall back to the GPU."""
    dla = load_target("jetson-agx-orin-dla").tensorrt
    assert dla.dla_core == 0 and dla.gpu_fallback and dla.dla_stages == ("encoder*",)
    for name in ("jetson-orin-nano", "jetson-agx-orin", "jetson-thor", "x86-gpu"):
        assert load_target(name).tensorrt.dla_core is None


def test_an_unknown_tensorrt_key_is_refused(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nbackend: tensorrt\ntensorrt: {max_workspace_size: 1024}\n")
    with pytest.raises(ConfigError, match="tensorrt.max_workspace_size"):
        load_target(str(path))


def test_every_dynamic_dim_spans_one_to_its_maximum_with_the_profile_opt() -> None:
    ranges = shape_ranges("expert[0]", TOKENS, MAX, TrtOptions(opt={"tokens": 16}))
    r = ranges["tokens"]
    assert (r.min, r.opt, r.max) == ((1, 32), (16, 32), (128, 32))
    assert not r.static
    assert r.to_dict() == {"min": [1, 32], "opt": [16, 32], "max": [128, 32]}


def test_opt_defaults_to_the_maximum() -> None:
    r = shape_ranges("gate", TOKENS, MAX, TrtOptions())["tokens"]
    assert r.opt == (128, 32)


def test_opt_outside_the_range_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"tensorrt.opt.tokens.*1..128"):
        shape_ranges("gate", TOKENS, MAX, TrtOptions(opt={"tokens": 500}))
    with pytest.raises(ConfigError, match="unknown dim"):
        shape_ranges("gate", TOKENS, MAX, TrtOptions(opt={"people": 2}))


def test_a_static_stage_is_built_at_its_maximum_only() -> None:
    options = TrtOptions(static_stages=("encoder*",))
    assert is_static("encoder[camera]", options) and not is_static("gate", options)
    r = shape_ranges("encoder[camera]", FRAME, MAX, options)["frame"]
    assert r.min == r.opt == r.max == (8, 3, 16, 16) and r.static


def test_a_stage_with_an_inner_dynamic_dim_cannot_be_static() -> None:
    spec = (TensorSpec("x", ("batch", "tokens", 4)),)
    with pytest.raises(ConfigError, match="dynamic dim after the first"):
        shape_ranges("odd", spec, MAX, TrtOptions(static_stages=("odd",)))


def test_a_dim_without_maximum_is_refused() -> None:
    with pytest.raises(ConfigError, match="no maximum"):
        shape_ranges("x", (TensorSpec("x", ("frames", 4)),), MAX, TrtOptions())


def test_dla_takes_only_static_stages_and_honours_dla_stages() -> None:
    options = TrtOptions(static_stages=("encoder*", "head"), dla_core=1, dla_stages=("encoder*",))
    assert on_dla("encoder[imu]", options)
    assert not on_dla("head", options)  # static, but not listed for the DLA
    assert not on_dla("gate", options)  # dynamic shapes never go to the DLA
    assert not on_dla("encoder[imu]", TrtOptions(static_stages=("encoder*",)))  # no DLA core
    assert dla_flags("encoder[imu]", options) == ("GPU_FALLBACK",)
    assert dla_flags("encoder[imu]", options.model_copy(update={"gpu_fallback": False})) == ()
    assert dla_flags("gate", options) == ()


def test_fp32_stages_stay_off_the_dla_and_say_why() -> None:
    options = TrtOptions(static_stages=("encoder*",), dla_core=0)
    assert on_dla("encoder[imu]", options, "int8") and not on_dla("encoder[imu]", options, "fp32")
    assert dla_flags("encoder[imu]", options, "fp32") == ()
    assert "calibrate" in (dla_skipped("encoder[imu]", options, "fp32") or "")
    assert dla_skipped("encoder[imu]", options, "fp16") is None and dla_skipped("gate", options, "fp32") is None


def test_strongly_typed_builds_set_no_precision_flags() -> None:
    assert uses_strong_typing(10, TrtOptions())
    for precision in ("fp32", "fp16", "int8"):
        assert precision_flags(precision, 10, strongly_typed=True) == ()


def test_tensorrt_8_6_builds_the_same_files_with_flags() -> None:
    assert not uses_strong_typing(8, TrtOptions())
    assert precision_flags("int8", 8, strongly_typed=False) == ("INT8", "FP16")
    assert precision_flags("fp16", 8, strongly_typed=False) == ("FP16",)
    assert precision_flags("fp32", 8, strongly_typed=False) == ()


def test_tensorrt_11_has_no_precision_flags() -> None:
    with pytest.raises(ConfigError, match="strongly_typed: true"):
        precision_flags("fp16", 11, strongly_typed=False)
    with pytest.raises(ConfigError, match="not one of"):
        precision_flags("int4", 10, strongly_typed=True)


def _entry(*precisions: str, choice: str = "fp32") -> StageEntry:
    ref = {"file": "stages/x.onnx", "sha256": "0" * 64}
    return StageEntry.model_validate({"inputs": [], "outputs": [], "variants": {p: ref for p in precisions},
                                      "precision": {"choice": choice}})


ENTRY = _entry("fp32", "fp16", "int8", "int8-dynamic", choice="int8")
ORT, TRT = get_backend("onnxruntime"), get_backend("tensorrt")


def test_auto_precision_follows_the_manifest_choice() -> None:
    assert choose_precision("expert[0]", ENTRY, "auto", TRT) == "int8"
    assert choose_precision("expert[0]", _entry("fp32"), "auto", TRT) == "fp32"


def test_a_forced_precision_must_exist_in_the_bundle() -> None:
    assert choose_precision("gate", ENTRY, "fp16", TRT) == "fp16"
    with pytest.raises(BundleError, match=r"stage 'gate': no int8 variant.*edgemoe calibrate"):
        choose_precision("gate", _entry("fp32"), "int8", TRT)


def test_int8_dynamic_is_an_onnxruntime_precision_only() -> None:
    assert choose_precision("gate", ENTRY, "int8-dynamic", ORT) == "int8-dynamic"
    with pytest.raises(BundleError, match=r"stage 'gate': the tensorrt backend does not build int8-dynamic"):
        choose_precision("gate", ENTRY, "int8-dynamic", TRT)
