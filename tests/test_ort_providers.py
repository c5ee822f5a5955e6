"""ONNX Runtime may be asked for GPU execution providers; what it actually granted is recorded,
and a refusal to fall back silently is honoured."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest

from edgemoe.core.errors import EngineError
from edgemoe.engines.build import build_engines
from edgemoe.engines.onnxruntime.backend import provider_report
from edgemoe.engines.target import load_target

GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


def test_provider_report_names_the_missing_ones() -> None:
    report = provider_report(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    assert report == {"providers": ["CPUExecutionProvider"],
                      "providers_requested": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                      "providers_missing": ["CUDAExecutionProvider"]}


def test_the_manifest_records_requested_and_granted_providers(bundle_dir: Path, tmp_path: Path) -> None:
    target = load_target("x86-gpu-onnxruntime")
    manifest = build_engines(bundle_dir, target, tmp_path / "ort-gpu")
    available = ort.get_available_providers()
    for stage, entry in manifest.model_dump(mode="json")["engines"].items():
        assert entry["providers_requested"] == list(target.onnxruntime.providers)
        assert set(entry["providers"]) <= set(available), stage
        assert entry["providers_missing"] == [p for p in target.onnxruntime.providers if p not in entry["providers"]]
        if not set(GPU_PROVIDERS) & set(available):
            assert entry["providers"] == ["CPUExecutionProvider"]
            assert entry["providers_missing"] == GPU_PROVIDERS
    on_disk = json.loads((tmp_path / "ort-gpu" / "manifest.json").read_text())
    assert on_disk["engines"] == manifest.model_dump(mode="json")["engines"]


def test_require_providers_refuses_the_cpu_fallback(bundle_dir: Path, tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed: there is no fallback to refuse")
    base = load_target("x86-gpu-onnxruntime")
    strict = base.model_copy(update={"onnxruntime": base.onnxruntime.model_copy(update={"require_providers": True})})
    with pytest.raises(EngineError, match=r"not available.*install onnxruntime-gpu"):
        build_engines(bundle_dir, strict, tmp_path / "strict")
    assert not (tmp_path / "strict").exists()


def test_build_warns_about_a_fallback_on_the_command_line(bundle_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe.cli import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed: no fallback to warn about")
    assert main(["build", str(bundle_dir), "--target", "x86-gpu-onnxruntime", "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "warning: gate runs on ['CPUExecutionProvider']" in out and "onnxruntime-gpu" in out
