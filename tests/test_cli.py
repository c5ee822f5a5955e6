"""Every verb of the ``edgemoe`` command, wired end to end on real files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgemoe.cli import main


def test_data_synth_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--scale", "0.02"]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["test.npz", "train.npz", "val.npz"]
    assert main(["data", "check", str(tmp_path / "d")]) == 0
    assert "ok" in capsys.readouterr().out


def test_train_writes_a_checkpoint(dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(dataset_dir), "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "epoch   1/1" in captured.err and "val mean acc" in captured.out and out.is_file()


def test_eval_prints_and_writes_every_mask(checkpoint_path: Path, dataset_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "table.json"
    assert main(["eval", str(checkpoint_path), "--data", str(dataset_dir), "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert len(table["masks"]) == 15 and {"accuracy", "macro_f1", "auroc"} <= set(table["mean"])
    assert "camera+scan+imu+odom" in capsys.readouterr().out


def test_export_build_infer(checkpoint_path: Path, dataset_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    bundle, engines = tmp_path / "bundle", tmp_path / "engines"
    assert main(["export", str(checkpoint_path), "--out", str(bundle)]) == 0
    assert main(["build", str(bundle), "--target", "cpu", "--out", str(engines)]) == 0
    assert main(["infer", str(engines), "--data", str(dataset_dir), "--mask", "camera+imu"]) == 0
    assert "camera+imu" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(tmp_path), "--target", "no-such-device", "--out", str(tmp_path / "e")]) == 2
    assert "target profile 'no-such-device' not found" in capsys.readouterr().err
    assert main(["infer", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_runtime_side_never_imports_torch(engines_dir: Path, dataset_dir: Path) -> None:
    code = (
        "import sys; from edgemoe.runtime.runtime import Runtime; from edgemoe.cli import main; "
        f"rc = main(['infer', {str(engines_dir)!r}, '--data', {str(dataset_dir)!r}, '--mask', 'odom']); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr


def test_version_names_the_engine_runtimes(capsys: pytest.CaptureFixture[str]) -> None:
    import edgemoe

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"edgemoe {edgemoe.__version__} (onnxruntime ")


def test_list_targets_shows_every_shipped_profile(capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe.engines.target import known_targets

    with pytest.raises(SystemExit):
        main(["build", "--list-targets"])
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[0] for r in rows] == known_targets() and "jetson-orin-nano" in known_targets()
    assert "jetson-orin-nano       tensorrt     auto  max batch 4" in rows


def test_build_flags_override_the_target_profile() -> None:
    from edgemoe.core.errors import ConfigError
    from edgemoe.engines.target import load_target, with_build_overrides

    orin = with_build_overrides(load_target("jetson-orin-nano"), "int8", workspace_mb=2048, dla_core=1)
    assert (orin.precision, orin.tensorrt.workspace_mb, orin.tensorrt.dla_core) == ("int8", 2048, 1)
    assert with_build_overrides(load_target("cpu")) == load_target("cpu")
    with pytest.raises(ConfigError, match="key 'tensorrt.workspace_mb'"):
        with_build_overrides(load_target("x86-gpu"), workspace_mb=1)


def test_fp16_flag_reaches_the_build(bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--fp16 on an uncalibrated bundle asks for a variant it lacks: the build says so."""
    assert main(["build", str(bundle_dir), "--fp16", "--out", str(tmp_path / "e")]) == 2
    assert "no fp16 variant in the bundle" in capsys.readouterr().err


def test_completion_script_covers_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe.cli import VERBS

    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#") and all(verb in script for verb in VERBS) and "--list-targets" in script


def test_verbosity_flags_after_the_verb(engines_dir: Path, dataset_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infer", str(engines_dir), "--data", str(dataset_dir), "--mask", "odom", "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("odom")
