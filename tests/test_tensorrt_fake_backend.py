"""The TensorRT backend end to end on the contract-checking fake (tests/fake_tensorrt), per target
profile: build (auto/fp32/fp16/int8, staged and fused, DLA on and off) -> manifest -> load -> infer
every mask -> switch masks -> close -> load again, with the answers checked against the ONNX
Runtime backend on the same ONNX variants and every allocation, stream and graph freed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemoe.core.bundle import read_model_manifest
from edgemoe.core.mask import all_masks, mask_names
from edgemoe.core.schema import ModelConfig
from edgemoe.core.stages import fused_stage
from edgemoe.engines.build import build_engines
from edgemoe.engines.target import TargetProfile, known_targets, load_target
from edgemoe.export.bundle import write_bundle
from edgemoe.runtime.runtime import Runtime
from edgemoe.train.checkpoint import Checkpoint
from tests.fake_tensorrt import DEVICES, installed

ROOT = Path(__file__).resolve().parents[1]
TRT_PROFILES = sorted(name for name in known_targets() if load_target(name).backend == "tensorrt")
FUSED = (0b0101, 0b1111)
SAMPLES = 6
ATOL = 2e-5  # the fake runs the same ONNX graph as ONNX Runtime; only row padding differs


def test_every_tensorrt_profile_has_a_fake_device() -> None:
    assert TRT_PROFILES and set(TRT_PROFILES) <= set(DEVICES), set(TRT_PROFILES) - set(DEVICES)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, checkpoint: Checkpoint, dataset_dir: Path) -> Path:
    """The suite's model with two fused hot-mask graphs, calibrated: fp32, fp16 and int8 variants."""
    from edgemoe.calibrate.pipeline import calibrate_bundle
    from edgemoe.calibrate.recipe import load_recipe

    out = tmp_path_factory.mktemp("trt-fake") / "bundle"
    write_bundle(checkpoint, out, fuse_masks=FUSED, fused_experts="dense")  # what TensorRT builds
    small = dict(samples_per_stage=64, min_samples=16, min_tokens_per_expert=16, draw_frames=128,
                 max_frames=512, batch=64)
    calibrate_bundle(out, dataset_dir, load_recipe("default").with_overrides(small))
    return out


@pytest.fixture(scope="module")
def frames(bundle: Path) -> dict[str, np.ndarray]:

    config = read_model_manifest(bundle).config
    rng = np.random.default_rng(7)
    return {s.name: rng.standard_normal((SAMPLES, *s.shape)).astype(np.float32) for s in config.sensors}


def with_precision(target: TargetProfile, precision: str) -> TargetProfile:
    return target.model_copy(update={"precision": precision})


@pytest.fixture(scope="module")
def references(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Runtime]:
    """ONNX Runtime (CPU) on the same variants, per precision."""
    runtimes = {}
    for precision in ("auto", "fp32", "fp16", "int8"):
        out = tmp_path_factory.mktemp(f"ort-{precision}") / "engines"
        build_engines(bundle, with_precision(load_target("cpu"), precision), out)
        runtimes[precision] = Runtime.load(out)
    yield runtimes
    for runtime in runtimes.values():
        runtime.close()


def check_manifest(manifest: dict[str, Any], target: TargetProfile, precision: str) -> None:
    options = target.tensorrt
    assert manifest["environment"]["sm_count"] == DEVICES[target.name].sm_count
    for stage, entry in {**manifest["engines"], **{e["stage"]: e for e in manifest["fused"].values()}}.items():
        assert entry["strongly_typed"] and entry["builder_flags"] in ([], ["GPU_FALLBACK"]), stage
        assert entry["tf32"] == (entry["precision"] != "fp32"), stage
        if precision != "auto" and not stage.startswith("fused"):
            assert entry["precision"] == precision
        for spec in entry["inputs"]:
            low, high = entry["profiles"][spec["name"]]["min"], entry["profiles"][spec["name"]]["max"]
            assert all(a <= b for a, b in zip(low, high)), stage
        dla = entry.get("dla")
        if options.dla_core is not None and stage.startswith("encoder"):
            assert dla, f"{stage}: the DLA profile sends encoders to the DLA but the manifest says nothing"
            if entry["precision"] == "fp32":
                assert "calibrate" in dla["skipped"]
            else:  # GELU/LayerNorm fall back: the report must name them and count Myelin nodes as GPU
                assert dla["fell_back_to_gpu"] and all("Myelin" not in n for n in dla["dla_layers"])
            assert "DLA" in entry["cuda_graph"]
        else:
            assert dla is None, stage


def infer_every_mask(runtime: Runtime, reference: Runtime, frames: dict[str, np.ndarray]) -> None:
    for mask in all_masks(len(runtime.sensor_names)):
        part = {n: frames[n] for n in mask_names(mask, runtime.sensor_names)}
        np.testing.assert_allclose(runtime.infer_batch(part, mask), reference.infer_batch(part, mask),
                                   atol=ATOL, err_msg=f"mask {mask}")


def switch_masks(runtime: Runtime, reference: Runtime, frames: dict[str, np.ndarray]) -> None:
    """Single frames whose mask changes every frame: fused engines for their masks, staged otherwise."""
    masks = all_masks(len(runtime.sensor_names))
    order = [masks[(i * 7) % len(masks)] for i in range(2 * len(masks))]
    for i, mask in enumerate(order):
        names = mask_names(mask, runtime.sensor_names)
        frame = {n: (frames[n][i % SAMPLES] if n in names else None) for n in runtime.sensor_names}
        got, want = runtime.infer(frame), reference.infer(frame)
        np.testing.assert_allclose(got.probs, want.probs, atol=ATOL, err_msg=f"frame {i}, mask {mask}")
        if mask in FUSED:
            assert got.engines == (f"fused[{mask}]",)


@pytest.mark.parametrize("profile", TRT_PROFILES)
@pytest.mark.parametrize("precision", ["auto", "fp32", "fp16", "int8"])
def test_build_load_infer_switch_close(profile: str, precision: str, bundle: Path, frames: dict[str, np.ndarray],
                                       references: dict[str, Runtime], tmp_path: Path) -> None:
    target = with_precision(load_target(profile), precision)
    with installed(DEVICES[profile]) as device:
        manifest = build_engines(bundle, target, tmp_path / "engines").model_dump(mode="json")
        check_manifest(manifest, target, precision)
        assert (tmp_path / "timing.cache").is_file()
        for cycle in range(2):  # load -> infer -> close -> load again: nothing left over, nothing freed twice
            runtime = Runtime.load(tmp_path / "engines")
            entries = {**manifest["engines"], **{e["stage"]: e for e in manifest["fused"].values()}}
            engines = {**runtime.bundle.engines, **{fused_stage(m): e for m, e in runtime.bundle.fused.items()}}
            for stage, engine in engines.items():
                about = engine.describe()  # type: ignore[attr-defined]
                assert about["cuda_graph"] == (entries[stage]["cuda_graph"] == "captured at warm-up"), (stage, about)
            if target.tensorrt.cuda_graphs:  # the fused hot-mask engines replay one graph per mask
                assert all(e.describe()["cuda_graph"] for e in runtime.bundle.fused.values())  # type: ignore[attr-defined]
            assert [s.priority for s in device.streams.values() if not s.destroyed] == [-5]  # one high-priority stream
            assert device.schedule == {"auto": 0, "spin": 1, "yield": 2, "blocking": 4}[target.tensorrt.sync]
            infer_every_mask(runtime, references[precision], frames)
            switch_masks(runtime, references[precision], frames)
            assert device.launches > 0  # the engines really ran on the fake
            runtime.close()
            runtime.close()  # a second close is harmless
            assert device.live() == [], f"cycle {cycle}: leaked {device.live()}"


def test_the_build_command_says_where_each_dla_stage_landed(bundle: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Fault 2: ``edgemoe build --target`` a DLA profile raised ``KeyError: 'dla_layers'`` for stages
    that stay fp32 (their ``dla`` entry says why instead of listing layers)."""
    import yaml

    from edgemoe.cli import main

    profile = yaml.safe_load((ROOT / "engines" / "jetson-agx-orin-dla.yaml").read_text())
    for precision, expect in (("fp32", r"GPU \(fp32 has no DLA implementation"),
                              ("fp16", r"\d+ on DLA, \d+ on GPU; fell back: ")):
        path = tmp_path / f"orin-dla-{precision}.yaml"
        path.write_text(yaml.safe_dump(dict(profile, precision=precision)))
        with installed(DEVICES["jetson-agx-orin-dla"]):
            assert main(["build", str(bundle), "--target", str(path), "--out", str(tmp_path / precision),
                         "--fuse", "none"]) == 0
        out = capsys.readouterr().out
        assert re.search(r"encoder\[camera\]: DLA placement: " + expect, out), out
        assert "gate: DLA" not in out


def test_the_device_check_verdict_runs_on_the_fake(bundle: Path, tmp_path: Path) -> None:
    """``scripts/device_check.sh``'s report step, run here on the fake so it cannot first fail on a device."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("device_check", ROOT / "device_tests/device_check.py")
    assert spec is not None and spec.loader is not None
    device_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device_check)
    with installed(DEVICES["jetson-orin-nano"]) as device:
        code = device_check.main(["--bundle", str(bundle), "--target", "jetson-orin-nano", "--out", str(tmp_path),
                                  "--samples", "8", "--repeats", "2"])
        assert device.live() == []
    report = json.loads((tmp_path / "device-check.json").read_text())
    assert code == (0 if report["verdict"] == "PASS" else 1)
    # fp32 engines run the same graph as the reference; int8 on 8 frames of a tiny model may miss its bound
    assert all(r["parity_ok"] and r["max_abs_dprob"] < 1e-5 for r in report["precisions"]["fp32"]["masks"])
    assert set(report["precisions"]) == {"fp32", "fp16", "int8"}
    for result in report["precisions"].values():
        assert len(result["masks"]) == 2 ** len(read_model_manifest(bundle).layout.sensors) - 1
        assert result["environment"]["sm_count"] == DEVICES["jetson-orin-nano"].sm_count
    assert "| 15 | camera+scan+imu+odom | 1 |" in (tmp_path / "device-check.md").read_text()  # the fused engine


def test_a_slots_model_with_late_imputers_builds_and_answers_like_onnxruntime(config: ModelConfig,
                                                                               tmp_path: Path) -> None:
    """Conf-SMoE's public readout on TensorRT: each imputer runs after the experts on the present
    sensors' expert outputs, whose count follows the mask (its profile spans it), and the head
    reads one slot per sensor."""
    import torch

    from edgemoe.model.registry import build_model
    from edgemoe.train.checkpoint import load_checkpoint, save_checkpoint

    cfg = config.model_copy(update={"model": config.model.model_copy(update={"method": "confsmoe"})})
    torch.manual_seed(0)
    save_checkpoint(build_model(cfg).eval(), tmp_path / "model.safetensors", {"best_epoch": 0})
    write_bundle(load_checkpoint(tmp_path / "model.safetensors"), tmp_path / "bundle", fuse_masks=(0b0101,),
                 fused_experts="dense")
    build_engines(tmp_path / "bundle", load_target("cpu"), tmp_path / "ort")
    profile = next(name for name in TRT_PROFILES if load_target(name).tensorrt.dla_core is None)
    target = load_target(profile)
    spec = cfg.model
    with installed(DEVICES[profile]):
        manifest = build_engines(tmp_path / "bundle", target, tmp_path / "trt").model_dump(mode="json")
        context = manifest["engines"]["imputer[scan]"]["profiles"]["context"]
        assert context["min"][1] == 1 and context["max"][1] == (cfg.num_sensors - 1) * spec.tokens_per_sensor
        assert manifest["engines"]["head"]["profiles"]["pooled"]["max"] == [target.max_batch,
                                                                            cfg.num_sensors * spec.dim]
        runtime, reference = Runtime.load(tmp_path / "trt"), Runtime.load(tmp_path / "ort")
        rng = np.random.default_rng(7)
        frames = {s.name: rng.standard_normal((SAMPLES, *s.shape)).astype(np.float32) for s in cfg.sensors}
        infer_every_mask(runtime, reference, frames)
        assert runtime.infer({n: frames[n][0] if n in ("camera", "imu") else None
                              for n in runtime.sensor_names}).engines == ("fused[5]",)
        runtime.close()
        reference.close()
