"""Every stage built into its own TensorRT engine (fp32 always; fp16 and int8 from a calibrated bundle) and run through the engine protocol (needs a
GPU and TensorRT): parity with ONNX Runtime fp32 per mask, latency per mask, refusal of tampered
or foreign engines, CUDA-graph replay equal to a normal run, shared scratch memory, and fused
hot-mask engines (static, batch 1) giving the staged plan's answer."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgemoe.core.bundle import read_model_manifest, sha256_file
from edgemoe.core.errors import BundleError
from edgemoe.core.mask import all_masks, full_mask, mask_names
from edgemoe.engines.build import build_engines
from edgemoe.engines.target import TargetProfile, load_target
from edgemoe.engines.tensorrt.detect import Probe
from edgemoe.runtime.loader import load_engine_bundle
from edgemoe.runtime.runtime import Runtime

# Largest |Δprob| allowed against ONNX Runtime fp32, and the share of argmax agreements required.
TOLERANCE = {"fp32": (5e-3, 0.99), "fp16": (2e-2, 0.98), "int8": (8e-2, 0.90)}
SAMPLES = 64


def target_for(name: str, precision: str, **trt: Any) -> TargetProfile:
    base = load_target(name)
    return base.model_copy(update={"precision": precision,
                                   "tensorrt": base.tensorrt.model_copy(update=trt)})


@pytest.fixture(scope="module", params=["fp32", "fp16", "int8"])
def built(request: pytest.FixtureRequest, device_bundle: Path, device_target: str,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, Any]]:
    precision = request.param
    model = read_model_manifest(device_bundle)
    lacking = [s for s, e in model.stages.items() if precision not in e.variants]
    if lacking:
        pytest.skip(f"bundle {device_bundle} has no {precision} variant for {lacking[:3]}...: set "
                    "EDGEMOE_DEVICE_BUNDLE to a bundle made by 'edgemoe calibrate'")
    out = tmp_path_factory.mktemp(f"trt-{precision}") / "engines"
    manifest = build_engines(device_bundle, target_for(device_target, precision), out).model_dump(mode="json")
    return precision, out, manifest.model_dump(mode="json")


@pytest.fixture(scope="module")
def reference(device_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    out = tmp_path_factory.mktemp("ort-fp32") / "engines"
    build_engines(device_bundle, load_target("cpu"), out)
    return Runtime.load(out)


def write_json(directory: Path, manifest: dict[str, Any]) -> None:
    """Write an edited manifest as is (the tests edit the JSON to forge a bundle)."""
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))


def frames_for(runtime: Runtime, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal((SAMPLES, *s.shape)).astype(np.float32) for s in runtime.config.sensors}


def test_every_stage_has_an_engine_and_a_complete_manifest(built: tuple[str, Path, dict[str, Any]],
                                                           tensorrt_device: Probe) -> None:
    precision, out, manifest = built
    env = manifest["environment"]
    assert env["tensorrt"] == tensorrt_device.facts["tensorrt"]
    assert env["compute_capability"] == tensorrt_device.facts["compute_capability"]
    for stage, entry in manifest["engines"].items():
        assert entry["precision"] == precision and entry["file"].endswith(".engine")
        assert entry["sha256"] == sha256_file(out / entry["file"])
        assert entry["source_sha256"] and entry["device_memory_size"] >= 0 and entry["engine_bytes"] > 0
        assert entry["strongly_typed"] == (int(env["tensorrt"].split(".")[0]) >= 10)
        for spec in entry["inputs"]:
            r = entry["profiles"][spec["name"]]
            assert len(r["min"]) == len(r["max"]) == len(spec["shape"])
        assert {t["name"] for t in entry["io"]} == {s["name"] for s in entry["inputs"] + entry["outputs"]}
        if entry.get("dla") is not None:
            print(f"{stage}: DLA {entry['dla']}")


def test_parity_with_onnxruntime_fp32_for_every_mask(built: tuple[str, Path, dict[str, Any]],
                                                     reference: Runtime) -> None:
    precision, out, _ = built
    atol, agree = TOLERANCE[precision]
    runtime = Runtime.load(out)
    frames = frames_for(runtime)
    worst = {}
    for mask in all_masks(len(runtime.sensor_names)):
        names = mask_names(mask, runtime.sensor_names)
        part = {n: frames[n] for n in names}
        got, want = runtime.infer_batch(part, mask), reference.infer_batch(part, mask)
        worst[mask] = float(np.abs(got - want).max())
        assert worst[mask] <= atol, f"mask {names}: max |Δp| {worst[mask]:.4f} > {atol} ({precision})"
        assert float((got.argmax(1) == want.argmax(1)).mean()) >= agree, f"mask {names}"
    print(f"{precision}: worst |Δp| per mask {worst}")
    runtime.close()


def test_latency_per_mask(built: tuple[str, Path, dict[str, Any]]) -> None:
    precision, out, manifest = built
    runtime = Runtime.load(out)
    frames = frames_for(runtime, seed=1)
    rows = []
    for mask in all_masks(len(runtime.sensor_names)):
        one = {n: frames[n][0] for n in mask_names(mask, runtime.sensor_names)}
        for _ in range(20):
            runtime.infer(one)
        times = []
        for _ in range(200):
            started = time.perf_counter()
            runtime.infer(one)
            times.append(time.perf_counter() - started)
        ms = np.array(times) * 1e3
        rows.append((mask, "+".join(mask_names(mask, runtime.sensor_names)), float(np.median(ms)),
                     float(np.percentile(ms, 99))))
        assert np.isfinite(ms).all()
    runtime.close()
    table = ["| mask | sensors | p50 ms | p99 ms |", "|---|---|---|---|"]
    table += [f"| {m} | {n} | {p50:.3f} | {p99:.3f} |" for m, n, p50, p99 in rows]
    text = (f"{precision} on {manifest['environment']['gpu']} (TensorRT {manifest['environment']['tensorrt']})\n"
            + "\n".join(table))
    print(text)
    report = os.environ.get("EDGEMOE_DEVICE_REPORT")
    if report:
        Path(report).mkdir(parents=True, exist_ok=True)
        (Path(report) / f"latency-{precision}.md").write_text(text + "\n")


def copy_of(out: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(out, dest)
    return dest


def test_a_tampered_engine_is_refused(built: tuple[str, Path, dict[str, Any]], tmp_path: Path) -> None:
    _, out, manifest = built
    bad = copy_of(out, tmp_path)
    entry = manifest["engines"]["gate"]
    data = bytearray((bad / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / entry["file"]).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"engine 'gate'.*sha256 mismatch.*edgemoe build"):
        load_engine_bundle(bad)


def test_an_engine_swapped_for_another_stage_is_refused(built: tuple[str, Path, dict[str, Any]],
                                                        tmp_path: Path) -> None:
    _, out, manifest = built
    bad = copy_of(out, tmp_path)
    head, gate = manifest["engines"]["head"], manifest["engines"]["gate"]
    shutil.copyfile(bad / head["file"], bad / gate["file"])  # sha256 made to match: only the I/O check remains
    edited = json.loads((bad / "manifest.json").read_text())
    edited["engines"]["gate"]["sha256"] = sha256_file(bad / gate["file"])
    write_json(bad, edited)
    with pytest.raises(BundleError, match=r"engine 'gate'.*do not match the manifest"):
        load_engine_bundle(bad)


def test_engines_from_another_tensorrt_are_refused(built: tuple[str, Path, dict[str, Any]], tmp_path: Path) -> None:
    _, out, manifest = built
    bad = copy_of(out, tmp_path)
    edited = json.loads((bad / "manifest.json").read_text())
    edited["environment"]["tensorrt"] = "8.6.2.3"
    write_json(bad, edited)
    with pytest.raises(BundleError, match=rf"built with 8.6.2.3, this device has {manifest['environment']['tensorrt']}"):
        load_engine_bundle(bad)


def test_cuda_graph_replay_equals_a_normal_run(device_bundle: Path, device_target: str,
                                               tmp_path: Path) -> None:
    graphs = build_engines(device_bundle, target_for(device_target, "fp32", static_stages=("encoder*", "head"),
                                                      cuda_graphs=True, dla_core=None),
                           tmp_path / "graphs").model_dump(mode="json")
    plain_dir = tmp_path / "plain"
    shutil.copytree(tmp_path / "graphs", plain_dir)
    edited = json.loads((plain_dir / "manifest.json").read_text())
    edited["target"]["tensorrt"]["cuda_graphs"] = False  # same engine files, no capture
    write_json(plain_dir, edited)
    with_graphs, without = Runtime.load(tmp_path / "graphs"), Runtime.load(plain_dir)
    captured = [s for s, e in with_graphs.bundle.engines.items() if e.describe()["cuda_graph"]]  # type: ignore[attr-defined]
    assert captured and all(s.startswith("encoder") or s == "head" for s in captured)
    frames = frames_for(with_graphs, seed=2)
    for mask in all_masks(len(with_graphs.sensor_names)):
        part = {n: frames[n] for n in mask_names(mask, with_graphs.sensor_names)}
        np.testing.assert_array_equal(with_graphs.infer_batch(part, mask), without.infer_batch(part, mask))
    assert graphs["engines"]["head"]["static"]


def test_engines_share_one_scratch_allocation(built: tuple[str, Path, dict[str, Any]]) -> None:
    _, out, manifest = built
    bundle = load_engine_bundle(out)
    sizes = [e["device_memory_size"] for e in manifest["engines"].values()]
    session = next(iter(bundle.engines.values()))._session  # type: ignore[attr-defined]
    assert session.scratch is not None and session.scratch.nbytes == max(max(sizes), 1)
    print(f"scratch: shared {max(sizes)} bytes instead of {sum(sizes)}")
    bundle.close()


def test_a_second_build_reuses_the_timing_cache(device_bundle: Path, device_target: str, tmp_path: Path) -> None:
    first = build_engines(device_bundle, target_for(device_target, "fp32", dla_core=None),
                          tmp_path / "a").model_dump(mode="json")
    second = build_engines(device_bundle, target_for(device_target, "fp32", dla_core=None),
                           tmp_path / "b").model_dump(mode="json")
    assert (tmp_path / "timing.cache").is_file()
    assert not first["engines"]["encoder[" + first["layout"]["sensors"][0] + "]"]["timing_cache"]["reused"]
    assert all(e["timing_cache"]["reused"] for e in second["engines"].values())


@pytest.fixture(scope="module")
def fused_bundle(device_bundle: Path, request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The device bundle if it carries fused graphs, else the suite's model exported with two."""
    if read_model_manifest(device_bundle).fused:
        return device_bundle
    try:
        from edgemoe.export.bundle import write_bundle

        checkpoint = request.getfixturevalue("checkpoint")
    except (ImportError, pytest.FixtureLookupError) as exc:
        pytest.skip(f"{device_bundle} has no fused graphs ('edgemoe export CKPT --fuse all --fused-experts "
                    f"dense') and none can be exported here ({exc})")
    out = tmp_path_factory.mktemp("fused") / "bundle"
    write_bundle(checkpoint, out, fuse_masks=(0b0101, full_mask(checkpoint.config.num_sensors)),
                 fused_experts="dense")
    return out


def test_fused_engines_give_the_staged_answer_on_tensorrt(fused_bundle: Path, device_target: str,
                                                          tmp_path: Path) -> None:
    manifest = build_engines(fused_bundle, target_for(device_target, "fp32", dla_core=None),
                             tmp_path / "engines").model_dump(mode="json")
    assert manifest["fused"], "no fused engine was built"
    for entry in manifest["fused"].values():
        assert all(r["min"] == r["max"] for r in entry["profiles"].values()), "fused engines are static, batch 1"
    runtime = Runtime.load(tmp_path / "engines")
    staged = Runtime(dataclasses.replace(runtime.bundle, fused={}))
    frames = frames_for(runtime, seed=3)
    for mask in runtime.fused_masks:
        for i in range(8):
            frame = {n: (frames[n][i] if n in mask_names(mask, runtime.sensor_names) else None)
                     for n in runtime.sensor_names}
            got, want = runtime.infer(frame), staged.infer(frame)
            assert got.engines == (f"fused[{mask}]",)
            np.testing.assert_allclose(got.probs, want.probs, atol=TOLERANCE["fp32"][0], err_msg=f"mask {mask}")
    runtime.close()


def test_every_engine_replays_its_planned_graph_or_says_why_not(built: tuple[str, Path, dict[str, Any]]) -> None:
    """On hardware: each engine the build planned a CUDA graph for captured one (a refused capture
    falls back and names the reason; that is reported here, and fails: it costs latency); the
    environment names the module and SM count that the engines are tied to."""
    _, out, manifest = built
    assert "sm_count" in manifest["environment"] and "module" in manifest["environment"]
    runtime = Runtime.load(out)
    entries = {**manifest["engines"], **{e["stage"]: e for e in manifest["fused"].values()}}
    engines = {**runtime.bundle.engines, **{f"fused[{m}]": e for m, e in runtime.bundle.fused.items()}}
    refused = {}
    for stage, engine in engines.items():
        about = engine.describe()  # type: ignore[attr-defined]
        print(f"{stage}: graph {about['cuda_graph']} ({about['cuda_graph_skipped']}), sync {about['sync']}")
        if entries[stage]["cuda_graph"] == "captured at warm-up" and not about["cuda_graph"]:
            refused[stage] = about["cuda_graph_skipped"]
    runtime.close()
    assert not refused, f"planned CUDA graphs TensorRT refused to capture: {refused}"
