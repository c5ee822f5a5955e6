"""Finding TensorRT: type stubs are not TensorRT, the backend is always registered, and using it
without TensorRT fails with an error that says what to install."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from edgemoe.core.errors import ConfigError, EngineError
from edgemoe.engines.backend import BACKENDS, get_backend
from edgemoe.engines.target import load_target
from edgemoe.engines.tensorrt import detect
from edgemoe.engines.tensorrt.backend import timing_cache_path
from edgemoe.engines.tensorrt.detect import is_real_tensorrt, parse_probe, version_tuple
from tests.polling import HANG_S


def test_a_namespace_package_is_not_tensorrt() -> None:
    stub = types.ModuleType("tensorrt")
    stub.__path__ = ["/site-packages/tensorrt"]  # what the stubs' folder imports as
    assert not is_real_tensorrt(stub)
    stub.Builder = object  # type: ignore[attr-defined]
    stub.Runtime = object  # type: ignore[attr-defined]
    assert is_real_tensorrt(stub)


def test_load_tensorrt_refuses_stubs_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = types.ModuleType("tensorrt")
    stub.__path__ = ["/site-packages/tensorrt"]
    monkeypatch.setitem(sys.modules, "tensorrt", stub)
    with pytest.raises(EngineError, match=r"is not TensorRT \(no tensorrt.Builder.*python3-libnvinfer"):
        detect.load_tensorrt()


def test_load_tensorrt_without_any_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes the import raise ImportError
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        detect.load_tensorrt()


def test_versions_parse() -> None:
    assert version_tuple("10.3.0.30") == (10, 3, 0, 30)
    assert version_tuple("8.6.2.3") == (8, 6, 2, 3)
    assert version_tuple("10.13.0.35.post1") == (10, 13, 0, 35)


def test_probe_results_are_read_from_the_last_line() -> None:
    ok = json.dumps({"gpu": True, "tensorrt": True, "facts": {"gpu": "Orin"}, "reason": ""})
    probe = parse_probe(0, "noise\n" + ok + "\n", "")
    assert probe.gpu and probe.tensorrt and probe.facts == {"gpu": "Orin"}


def test_a_crashed_probe_is_no_device() -> None:
    probe = parse_probe(-6, "", "terminate called\nAborted (core dumped)")
    assert not probe.gpu and not probe.tensorrt
    assert "status -6" in probe.reason and "Aborted" in probe.reason
    assert "printed no result" in parse_probe(0, "garbage", "").reason


def test_the_probe_here_runs_in_a_subprocess_and_says_why_not() -> None:
    probe = detect.probe_device(timeout=HANG_S)
    if probe.tensorrt:
        pytest.skip(f"this machine has TensorRT {probe.facts.get('tensorrt')} on a GPU")
    assert probe.reason, "a negative probe must say why"


def test_the_backend_registers_without_tensorrt() -> None:
    backend = get_backend("tensorrt")
    assert "tensorrt" in BACKENDS and backend.engine_suffix == ".engine"


def test_using_the_backend_without_tensorrt_fails_clearly(tmp_path: Path) -> None:
    if detect.probe_device().tensorrt:
        pytest.skip("TensorRT is usable here")
    backend = get_backend("tensorrt")
    with pytest.raises(EngineError, match="backend 'tensorrt'.*install"):
        backend.environment(load_target("x86-gpu"))
    with pytest.raises(EngineError, match="backend 'tensorrt'"):
        backend.load_stage("gate", tmp_path / "gate.engine", (), (), {}, load_target("x86-gpu"))


def test_building_a_bundle_for_a_tensorrt_target_fails_before_writing(bundle_dir: Path, tmp_path: Path) -> None:
    from edgemoe.engines.build import build_engines

    if detect.probe_device().tensorrt:
        pytest.skip("TensorRT is usable here")
    out = tmp_path / "engines" / "x86"
    with pytest.raises(EngineError, match="backend 'tensorrt'"):
        build_engines(bundle_dir, load_target("x86-gpu").model_copy(update={"precision": "fp32"}), out)
    assert not out.exists() and list((tmp_path / "engines").iterdir()) == []


def test_the_timing_cache_lives_beside_the_bundle_and_survives_rebuilds(tmp_path: Path) -> None:
    staged = tmp_path / "engines" / ".orin.abc123" / "gate.int8.engine"  # build.py's staged directory
    assert timing_cache_path(staged, load_target("jetson-orin-nano")) == (tmp_path / "engines" / "timing.cache")
    no_cache = load_target("x86-gpu").model_copy(
        update={"tensorrt": load_target("x86-gpu").tensorrt.model_copy(update={"timing_cache": None})})
    assert timing_cache_path(staged, no_cache) is None


@pytest.mark.parametrize(("model", "profile"), [
    ("NVIDIA Jetson AGX Orin Developer Kit", "jetson-agx-orin"),
    ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "jetson-orin-nano"),
    ("NVIDIA Jetson AGX Thor Developer Kit", "jetson-thor"),
])
def test_the_module_picks_its_profile(model: str, profile: str, tmp_path: Path) -> None:
    (tmp_path / "model").write_bytes(model.encode() + b"\x00")
    assert detect.jetson_module(tmp_path / "model") == model
    assert detect.profile_for_module(model, tegra=True) == profile


def test_an_unknown_module_is_refused_not_guessed() -> None:
    with pytest.raises(ConfigError, match="no target profile for the module 'NVIDIA Jetson Orin NX"):
        detect.profile_for_module("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", tegra=True)
    with pytest.raises(ConfigError, match="unreadable"):
        detect.profile_for_module(None, tegra=True)
    assert detect.profile_for_module(None, tegra=False) == "x86-gpu"
    assert detect.jetson_module(Path("/nonexistent/model")) is None
