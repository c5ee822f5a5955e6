"""Self-describing artifacts: checkpoints, bundles and engine bundles refuse tampering clearly."""

import json
import shutil
from pathlib import Path

import onnx
import pytest

from edgemoe.core.bundle import read_model_manifest
from edgemoe.core.errors import BundleError
from edgemoe.engines.build import build_engines
from edgemoe.engines.target import load_target
from edgemoe.export.onnx_stage import OPSET
from edgemoe.runtime.loader import load_engine_bundle
from edgemoe.train.checkpoint import CheckpointError, load_checkpoint


def test_checkpoint_carries_the_schema_and_loads_without_pickle(checkpoint_path: Path, config) -> None:
    ckpt = load_checkpoint(checkpoint_path)
    assert ckpt.config.sensor_names == config.sensor_names
    assert "val_table" in ckpt.info


def test_non_checkpoint_files_are_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.safetensors"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(bogus)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_a_flipped_byte_in_a_checkpoint_is_refused_at_load(checkpoint_path: Path, tmp_path: Path) -> None:
    data = bytearray(checkpoint_path.read_bytes())
    data[len(data) // 2] ^= 0x01  # mid-file: tensor bytes, which safetensors alone never checks
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped.safetensors: content sha256 mismatch"):
        load_checkpoint(flipped)


def test_bundle_has_one_single_file_onnx_per_stage(bundle_dir: Path) -> None:
    manifest = read_model_manifest(bundle_dir)
    expected = {f"encoder[{s}]" for s in ("camera", "scan", "imu", "odom")} | {"gate", "head"} | {
        f"expert[{e}]" for e in range(4)}
    assert set(manifest.stages) == expected
    assert manifest.opset == OPSET and manifest.exporter.startswith("torch.onnx")
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest.tools)
    for name, entry in manifest.stages.items():
        graph = onnx.load(bundle_dir / entry.variants["fp32"].file)
        assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.graph.initializer)
        assert [i.name for i in graph.graph.input] == [t.name for t in entry.inputs]
        assert graph.opset_import[0].version == OPSET
        ops = {n.op_type for n in graph.graph.node}
        assert "TopK" not in ops, f"{name}: top-k belongs to the runtime, not a graph"


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def test_tampered_stage_file_is_refused_at_build(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    (bundle / "stages" / "expert_1.onnx").write_bytes((bundle / "stages" / "expert_0.onnx").read_bytes())
    with pytest.raises(BundleError, match=r"stage 'expert\[1\]'.*sha256 mismatch.*edgemoe export"):
        build_engines(bundle, load_target("cpu"), tmp_path / "engines")
    assert not (tmp_path / "engines").exists(), "a failed build must leave nothing behind"


def test_missing_stage_file_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    (bundle / "stages" / "head.onnx").unlink()
    with pytest.raises(BundleError, match=r"stage 'head'.*'stages/head.onnx' is missing"):
        build_engines(bundle, load_target("cpu"), tmp_path / "engines")


def test_tampered_engine_is_refused_at_load(engines_dir: Path, tmp_path: Path) -> None:
    engines = _copy(engines_dir, tmp_path)
    target = next(engines.glob("gate.*"))
    target.write_bytes(target.read_bytes() + b"\x00")
    with pytest.raises(BundleError, match=r"engine 'gate'.*sha256 mismatch.*edgemoe build"):
        load_engine_bundle(engines)


def test_engine_manifest_without_a_stage_is_refused(engines_dir: Path, tmp_path: Path) -> None:
    engines = _copy(engines_dir, tmp_path)
    manifest = json.loads((engines / "manifest.json").read_text())
    del manifest["engines"]["expert[2]"]
    (engines / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"no engine for stage 'expert\[2\]'"):
        load_engine_bundle(engines)


def test_model_bundle_is_not_an_engine_bundle(bundle_dir: Path) -> None:
    with pytest.raises(BundleError, match="format 'edgemoe-bundle/2' but 'edgemoe-engines/2' expected"):
        load_engine_bundle(bundle_dir)


def test_existing_output_is_not_clobbered(bundle_dir: Path, engines_dir: Path) -> None:
    with pytest.raises(BundleError, match="exists and is not empty"):
        build_engines(bundle_dir, load_target("cpu"), engines_dir)


def test_a_build_into_a_symlink_swaps_it_atomically_and_a_failed_one_leaves_it(
        bundle_dir: Path, engines_dir: Path, tmp_path: Path) -> None:
    old = tmp_path / "build-1"
    shutil.copytree(engines_dir, old)
    current = tmp_path / "current"
    current.symlink_to(old.name)
    visible = lambda: sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))  # noqa: E731
    before = visible()

    def during(stage: str, precision: str) -> None:  # mid-build: the daemon's path is the old build
        assert current.resolve() == old.resolve() and visible() == before

    manifest = build_engines(bundle_dir, load_target("cpu"), current, force=True, on_stage=during)
    new = current.resolve()
    assert current.is_symlink() and new != old.resolve() and new.name.startswith("current-")
    assert (new / "manifest.json").is_file() and manifest.engines and old.is_dir()
    bundle = _copy(bundle_dir, tmp_path / "bad")
    (bundle / "stages" / "head.onnx").write_bytes(b"not a graph")
    with pytest.raises(BundleError, match=r"stage 'head'.*sha256 mismatch"):
        build_engines(bundle, load_target("cpu"), current, force=True)
    assert current.resolve() == new and not list(tmp_path.glob(".current.*"))

