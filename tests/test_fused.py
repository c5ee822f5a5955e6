"""Fused hot-mask engines: exported beside the stages, built on request, used by the runtime for
single frames of their mask with the staged plan's answer, measured and chosen by the profiler."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from prometheus_client import generate_latest

from edgemoe.cli import main
from edgemoe.core.bundle import read_model_manifest
from edgemoe.core.errors import BundleError, ConfigError
from edgemoe.core.mask import all_masks, masks_to_bits, parse_mask_selection
from edgemoe.daemon.metrics import DaemonMetrics
from edgemoe.data.dataset import Split
from edgemoe.engines.build import build_engines
from edgemoe.engines.target import load_target
from edgemoe.export.bundle import write_bundle
from edgemoe.profile.fused import choose_fused, read_frequencies
from edgemoe.runtime.loader import load_engine_bundle
from edgemoe.runtime.runtime import Runtime
from edgemoe.train.checkpoint import Checkpoint

FUSED = (0b0101, 0b1111)  # camera+imu, every sensor


@pytest.fixture(scope="module")
def fused_bundle(tmp_path_factory: pytest.TempPathFactory, checkpoint: Checkpoint) -> Path:
    out = tmp_path_factory.mktemp("fused") / "bundle"
    write_bundle(checkpoint, out, fuse_masks=FUSED)
    return out


@pytest.fixture(scope="module")
def fused_engines(tmp_path_factory: pytest.TempPathFactory, fused_bundle: Path) -> Path:
    out = tmp_path_factory.mktemp("fused-engines") / "cpu"
    build_engines(fused_bundle, load_target("cpu"), out)
    return out


def test_fused_frames_give_the_staged_answer_in_one_call(fused_engines: Path, dataset: dict[str, Split]) -> None:
    runtime = Runtime.load(fused_engines)
    staged = Runtime(dataclasses.replace(runtime.bundle, fused={}))
    assert runtime.fused_masks == list(FUSED)
    test = dataset["test"]
    for mask in all_masks(4):
        for i in range(5):
            frame = {n: (test.frames[n][i] if mask >> b & 1 else None) for b, n in enumerate(runtime.sensor_names)}
            got, want = runtime.infer(frame), staged.infer(frame)
            np.testing.assert_allclose(got.probs, want.probs, atol=1e-5, err_msg=f"mask {mask}")
            assert got.label == want.label
            assert got.engines == ((f"fused[{mask}]",) if mask in FUSED else want.engines)
    assert len(staged.infer({n: test.frames[n][0] for n in runtime.sensor_names}).engines) > 1
    runtime.close()


def test_auto_keeps_the_faster_expert_form_of_each_mask(fused_bundle: Path) -> None:
    manifest = read_model_manifest(fused_bundle)
    for mask in FUSED:
        entry = manifest.fused[mask]
        assert set(entry.form_us) == {"dense", "routed"} and min(entry.form_us.values()) > 0
        assert entry.experts == min(entry.form_us, key=entry.form_us.__getitem__)
        ops = {node.op_type for node in onnx.load(fused_bundle / entry.variants["fp32"].file).graph.node}
        assert ("NonZero" in ops) == (entry.experts == "routed"), (mask, entry.experts, sorted(ops))


def test_routed_experts_give_the_dense_answer(checkpoint: Checkpoint, dataset: dict[str, Split]) -> None:
    """Each expert on the present tokens routed to it computes what the training forward's dense
    bank picks, on every mask; rows that are not live come back unchanged."""
    model = checkpoint.model.eval()
    frames = {n: torch.from_numpy(f[:16]) for n, f in dataset["test"].frames.items()}
    masks = np.resize(np.array(all_masks(4)), 16)
    present = torch.from_numpy(masks_to_bits(masks, 4))
    with torch.no_grad():
        dense = model(frames, present).logits
        routed = model.routed_logits(frames, present)
        flat = torch.randn(12, model.config.model.dim)
        routing = model.router(flat[None], torch.ones(1, 12, dtype=torch.bool))
        live = torch.arange(12) % 3 != 0
        mixed = model.experts.routed(flat, routing, live)
    torch.testing.assert_close(routed, dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[~live], flat[~live], atol=0, rtol=0)
    torch.testing.assert_close(mixed[live], model.experts(flat, routing).tokens[live], atol=1e-5, rtol=1e-5)


def test_a_routed_fused_graph_is_refused_by_a_backend_that_cannot_build_it(
    checkpoint: Checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    assert main(["export", str(checkpoint.path), "--out", str(bundle), "--fuse", "camera+imu",
                 "--fused-experts", "routed"]) == 0
    assert read_model_manifest(bundle).fused[5].experts == "routed"
    with pytest.raises(BundleError, match=r"stage 'fused\[5\]': its experts are routed .* tensorrt .*"
                                          r"'--fused-experts dense'"):
        build_engines(bundle, load_target("jetson-orin-nano"), tmp_path / "trt")
    assert not (tmp_path / "trt").exists()
    built = build_engines(bundle, load_target("cpu"), tmp_path / "cpu")
    assert built.fused[5].experts == "routed"


def test_build_takes_the_chosen_fused_masks_and_refuses_absent_ones(fused_bundle: Path, tmp_path: Path) -> None:
    manifest = build_engines(fused_bundle, load_target("cpu"), tmp_path / "one", fuse=[0b1111])
    assert list(manifest.fused) == [15] and manifest.fused[15].stage == "fused[15]"
    assert load_engine_bundle(tmp_path / "one").fused.keys() == {15}
    with pytest.raises(BundleError, match=r"no fused graph for mask\(s\) \[3\]"):
        build_engines(fused_bundle, load_target("cpu"), tmp_path / "absent", fuse=[0b0011])
    assert not (tmp_path / "absent").exists()
    none = build_engines(fused_bundle, load_target("cpu"), tmp_path / "none", fuse=[])
    assert none.fused == {}


def test_the_target_profile_chooses_the_fused_masks_and_the_command_line_overrides_it(
        fused_bundle: Path, tmp_path: Path) -> None:
    import yaml

    def build(fuse: list[str] | None, *flags: str) -> set[int]:
        profile = tmp_path / f"cpu-{len(list(tmp_path.iterdir()))}.yaml"
        profile.write_text(yaml.safe_dump({**load_target("cpu").model_dump(mode="json"), "fuse": fuse}))
        out = tmp_path / f"engines-{profile.stem}"
        assert main(["build", str(fused_bundle), "--target", str(profile), "--out", str(out), *flags]) == 0
        assert json.loads((out / "manifest.json").read_text())["target"]["fuse"] == fuse
        return set(load_engine_bundle(out).fused)

    assert build(None) == set(FUSED)
    assert build(["camera+imu"]) == {0b0101}
    assert build(["none"]) == set()
    assert build(["none"], "--fuse", "15") == {0b1111}


def test_a_tampered_fused_engine_is_refused_by_name(fused_engines: Path, tmp_path: Path) -> None:
    copy = tmp_path / "engines"
    shutil.copytree(fused_engines, copy)
    entry = json.loads((copy / "manifest.json").read_text())["fused"]["5"]
    with open(copy / entry["file"], "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match=r"engine 'fused\[5\]': sha256 mismatch"):
        load_engine_bundle(copy)


def test_profile_measures_both_paths_and_writes_the_choice(fused_engines: Path, tmp_path: Path) -> None:
    metrics = DaemonMetrics(("camera", "scan", "imu", "odom"))
    for mask, count in ((0b0101, 30), (0b1111, 10), (0b0001, 5)):
        for _ in range(count):
            metrics.predicted(mask, 1e-4)
    scrape = tmp_path / "metrics.txt"
    scrape.write_bytes(generate_latest(metrics.registry))
    out = tmp_path / "prof"
    rc = main(["profile", str(fused_engines), "--out", str(out), "--mask", "camera+imu", "--mask", "15",
               "--frames", "20", "--rounds", "1", "--switch-frames", "8", "--no-progress",
               "--frequencies", str(scrape)])
    assert rc == 0
    run = json.loads((out / "profile.json").read_text())["runs"][0]
    assert set(run["fused"]) == {"5", "15"}
    built = load_engine_bundle(fused_engines).manifest.fused
    for key, m in run["fused"].items():
        assert m["fused"]["n"] == m["staged"]["n"] == 20 and m["file_kib"] > 10
        assert (m["experts"], m["precision"]) == (built[int(key)].experts, built[int(key)].precision)
    assert run["masks"]["5"]["stages"].keys() == {"fused[5]"}
    choice = json.loads((out / "fused_choice.json").read_text())
    assert choice["frequencies"] == "given"
    assert choice["rows"]["5"]["frequency"] == pytest.approx(30 / 45)
    report = (out / "profile.md").read_text()
    assert "## Fused hot-mask engines" in report
    assert f"| camera+imu | {built[5].experts}, fp32 |" in report
    assert parse_mask_selection([str(out / "fused_choice.json")], ("camera", "scan", "imu", "odom")) == choice["masks"]


def test_the_choice_spends_the_budget_on_the_best_saving_per_mib() -> None:
    def measured(gain: float, mib: float) -> dict[str, float]:
        return {"gain_us": gain, "rss_mib": mib, "file_kib": 1.0}

    found = {1: measured(100, 1.0), 2: measured(100, 4.0), 3: measured(-5, 0.1), 4: measured(50, 0.5)}
    choice = choose_fused(found, {1: 1, 2: 1, 3: 1, 4: 1}, budget_mib=2.0)
    assert choice["masks"] == [1, 4]
    assert "over the budget" in choice["rows"]["2"]["why"]
    assert choice["rows"]["3"]["why"] == "not faster than the staged plan"
    rare = choose_fused(found, {1: 0, 2: 10, 3: 1, 4: 1}, budget_mib=None)
    assert rare["masks"] == [2, 4] and rare["rows"]["1"]["why"] == "never seen"


def test_frequencies_read_from_json_and_refuse_garbage(tmp_path: Path) -> None:
    names = ("camera", "scan", "imu", "odom")
    good = tmp_path / "freq.json"
    good.write_text(json.dumps({"camera+imu": 3, "15": 1}))
    assert read_frequencies(good, names) == {5: 3.0, 15: 1.0}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lidar": 3}))
    with pytest.raises(ConfigError, match="bad.json: cannot read mask frequencies"):
        read_frequencies(bad, names)
    empty = tmp_path / "metrics.txt"
    empty.write_text("# nothing here\n")
    with pytest.raises(ConfigError, match="no edgemoe_mask_predictions_total samples"):
        read_frequencies(empty, names)
