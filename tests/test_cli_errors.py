"""Every bad input gets one line on stderr naming what was wrong, the documented exit code, no
traceback and no partial output (nothing on stdout, no file written or changed).

One table: each case prepares its inputs in a fresh directory and gives the command line, the exit
code and what the line must name. Exit codes: 2 the command or an input is wrong, 1 a failure while
running, 130 interrupted (docs/cli.md).
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from edgemoe.cli import main


@dataclass(frozen=True)
class Inputs:
    tmp: Path
    dataset: Path
    checkpoint: Path
    bundle: Path
    engines: Path

    def copy(self, what: Path, name: str) -> Path:
        return Path(shutil.copytree(what, self.tmp / name))

    def daemon_config(self, **sections: object) -> str:
        data = {"sources": {"replay": {"dataset": str(self.dataset)}}, "metrics": {"port": 0}, **sections}
        (self.tmp / "daemon.yaml").write_text(yaml.safe_dump(data))
        return str(self.tmp / "daemon.yaml")


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[Inputs], list[str]]
    code: int
    names: Callable[[Inputs], str]  # text the error line must contain
    usage: bool = False  # an argparse error: the verb's usage, then the one error line


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _bad_dataset(i: Inputs) -> list[str]:
    data = i.copy(i.dataset, "data")
    _write(data / "val.npz", b"not a zip file")
    return ["data", "check", str(data)]


def _typo_config(i: Inputs) -> list[str]:
    _write(i.tmp / "model.yaml", "name: robot4\nnum_clases: 8\n")
    return ["data", "check", str(i.dataset), "--config", str(i.tmp / "model.yaml")]


def _truncated_checkpoint(i: Inputs) -> list[str]:
    data = i.checkpoint.read_bytes()
    _write(i.tmp / "cut.safetensors", data[: len(data) // 2])
    return ["eval", str(i.tmp / "cut.safetensors"), "--data", str(i.dataset), "--out", str(i.tmp / "t.json")]


def _corrupt_manifest(i: Inputs) -> list[str]:
    engines = i.copy(i.engines, "engines")
    _write(engines / "manifest.json", "{ not json")
    return ["infer", str(engines), "--data", str(i.dataset)]


def _wrong_typed_manifest_field(i: Inputs) -> list[str]:
    engines = i.copy(i.engines, "engines")
    manifest = json.loads((engines / "manifest.json").read_text())
    manifest["layout"]["top_k"] = "two"
    _write(engines / "manifest.json", json.dumps(manifest))
    return ["infer", str(engines), "--data", str(i.dataset)]


def _flipped_stage_file(i: Inputs) -> list[str]:
    engines = i.copy(i.engines, "engines")
    stage = next(engines.glob("gate.*"))
    raw = bytearray(stage.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    stage.write_bytes(bytes(raw))
    return ["infer", str(engines), "--data", str(i.dataset)]


def _existing(i: Inputs, name: str, text: str = "keep me\n") -> str:
    return str(_write(i.tmp / name, text))


def _existing_dir(i: Inputs, name: str) -> str:
    (i.tmp / name).mkdir()
    _write(i.tmp / name / "keep.txt", "keep me\n")
    return str(i.tmp / name)


def _port_in_use(i: Inputs) -> list[str]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    HELD.append(holder)
    return ["run", str(i.engines), "--config", i.daemon_config(metrics={"port": holder.getsockname()[1]})]


HELD: list[socket.socket] = []

CASES = [
    # already handled before: keep them
    Case("dataset file is not an npz", _bad_dataset, 2, lambda i: "val.npz"),
    Case("typo in a config key", _typo_config, 2, lambda i: "num_clases"),
    Case("truncated checkpoint", _truncated_checkpoint, 2, lambda i: "cut.safetensors"),
    Case("corrupt engine manifest", _corrupt_manifest, 2, lambda i: "manifest.json"),
    Case("modified stage file", _flipped_stage_file, 2, lambda i: "'gate'"),
    Case("wrong-typed manifest field", _wrong_typed_manifest_field, 2, lambda i: "top_k"),
    Case("unknown sensor in a mask", lambda i: ["infer", str(i.engines), "--data", str(i.dataset), "--mask", "lidar"],
         2, lambda i: "unknown sensor 'lidar'"),
    Case("TensorRT missing", lambda i: ["build", str(i.bundle), "--target", "jetson-orin-nano",
                                        "--out", str(i.tmp / "e")], 1,
         # absent, or only its type stubs (which the mypy check installs): the same one line and hint
         lambda i: "install TensorRT's Python bindings"),
    Case("unknown target", lambda i: ["build", str(i.bundle), "--target", "pi-zero", "--out", str(i.tmp / "e")],
         2, lambda i: "target profile 'pi-zero' not found; known: ['cpu',"),
    Case("unknown calibration recipe", lambda i: ["calibrate", str(i.bundle), "--data", str(i.dataset),
                                                  "--recipe", "harbour"], 2,
         lambda i: "calibration recipe 'harbour' not found; known: ['default'"),
    # silent overwrites, now refused
    Case("train --out onto a file", lambda i: ["train", "--data", str(i.dataset), "--out", _existing(i, "cfg.yaml")],
         2, lambda i: f"--out {i.tmp / 'cfg.yaml'}: the file exists; pass --force"),
    Case("eval --out onto a file", lambda i: ["eval", str(i.checkpoint), "--data", str(i.dataset),
                                              "--out", _existing(i, "t.json")], 2, lambda i: "t.json: the file exists"),
    Case("data synth onto a dataset", lambda i: ["data", "synth", "--out", _existing_dir(i, "d")], 2,
         lambda i: "d: the directory exists; pass --force"),
    Case("export onto a bundle", lambda i: ["export", str(i.checkpoint), "--out", _existing_dir(i, "b")], 2,
         lambda i: "the directory exists; pass --force"),
    Case("build onto engines", lambda i: ["build", str(i.bundle), "--out", _existing_dir(i, "e")], 2,
         lambda i: "the directory exists; pass --force"),
    # tracebacks before, one line now
    Case("data synth --out FILE", lambda i: ["data", "synth", "--out", _existing(i, "f"), "--force"], 2,
         lambda i: "is a file; give a directory path"),
    Case("profile --out FILE", lambda i: ["profile", str(i.engines), "--out", _existing(i, "f")], 2,
         lambda i: "is a file; give a directory path"),
    Case("metrics port in use", _port_in_use, 1, lambda i: "key 'metrics.port': cannot listen on 127.0.0.1:"),
    Case("unbindable Unix socket", lambda i: ["run", str(i.engines), "--config", i.daemon_config(
        flags={"control": {"path": str(i.tmp / "no" / "such" / "ctl.sock")}})], 1,
         lambda i: f"key 'flags.control.path': no directory {i.tmp / 'no' / 'such'}"),
    Case("--dla-core on an onnxruntime target", lambda i: ["build", str(i.bundle), "--dla-core", "0",
                                                           "--out", str(i.tmp / "e")], 2,
         lambda i: "target 'cpu' builds with onnxruntime, not TensorRT"),
    Case("empty mask", lambda i: ["infer", str(i.engines), "--data", str(i.dataset), "--mask", ""], 2,
         lambda i: "argument --mask: empty mask", usage=True),
    Case("unknown log level", lambda i: ["run", str(i.engines), "--config", "x.yaml", "--log-level", "LOUD"], 2,
         lambda i: "argument --log-level: invalid choice: 'LOUD'", usage=True),
    Case("unknown flag after a verb", lambda i: ["build", str(i.bundle), "--out", "e", "--fp64"], 2,
         lambda i: "unrecognized arguments: --fp64", usage=True),
]


@pytest.fixture
def inputs(tmp_path: Path, dataset_dir: Path, checkpoint_path: Path, bundle_dir: Path, engines_dir: Path) -> Inputs:
    work = tmp_path / "work"
    work.mkdir()
    return Inputs(work, dataset_dir, checkpoint_path, bundle_dir, engines_dir)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_line(case: Case, inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    argv = case.argv(inputs)
    before = _snapshot(inputs.tmp)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    finally:
        while HELD:
            HELD.pop().close()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert "Traceback" not in err and out == ""
    if case.usage:
        assert lines[0].startswith(f"usage: edgemoe {argv[0]}") and lines[-1].startswith(f"edgemoe {argv[0]}: error:")
    else:
        assert len(lines) == 1 and lines[0].startswith(f"edgemoe {argv[0]}: error: "), err
    assert case.names(inputs) in lines[-1], lines[-1]
    assert _snapshot(inputs.tmp) == before, "a refused command changed files"


def test_calibrate_without_a_recipe_never_falls_back_to_no_missing_sensors(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    """With no recipe to be found, calibrate stops instead of calibrating on the all-sensors mask."""
    from edgemoe.calibrate import recipe
    from edgemoe.core.errors import ConfigError
    from edgemoe.packaged import ShippedFolder

    assert recipe.load_recipe(None).missing, "the shipped default recipe states missing-sensor rates"
    monkeypatch.setattr(recipe, "CALIBRATION_RECIPES", ShippedFolder("nowhere", "edgemoe.no_such_package", "recipe"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="calibration recipe 'default' not found"):
        recipe.load_recipe(None)


def test_ctrl_c_in_build_exits_130_and_writes_nothing(bundle_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe.recipes.conventions import StageTimer

    started: list[str] = []
    real = StageTimer.start

    def start_then_interrupt(self: StageTimer, stage: str, detail: str = "") -> None:
        started.append(stage)
        if len(started) == 3:  # two engines built, the third under way
            raise KeyboardInterrupt
        real(self, stage, detail)

    monkeypatch.setattr(StageTimer, "start", start_then_interrupt)
    assert main(["build", str(bundle_dir), "--out", str(tmp_path / "e")]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines()[-1] == (
        "edgemoe build: interrupted; the engine bundle directory was not written (left as it was)")
    assert list(tmp_path.iterdir()) == []


INTERRUPTED_TRAIN = ("edgemoe train: interrupted; a checkpoint is written to --out after every finished epoch; "
                     "continue with --resume")


def test_ctrl_c_in_train_exits_130_and_keeps_the_finished_epochs(dataset_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from edgemoe.train.trainer import Trainer

    real = Trainer._epoch
    calls: list[int] = []

    def epoch_then_interrupt(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_epoch", epoch_then_interrupt)
    out_file = tmp_path / "m.safetensors"
    assert main(["train", "--data", str(dataset_dir), "--out", str(out_file), "--epochs", "3", "-q"]) == 130
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == INTERRUPTED_TRAIN
    assert list(tmp_path.iterdir()) == [out_file]  # epoch 1's checkpoint, nothing half-written
    from edgemoe.train.checkpoint import load_resume_state

    assert load_resume_state(out_file)[1].epoch == 1


def test_json_documents_are_the_only_stdout(engines_dir: Path, dataset_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infer", str(engines_dir), "--data", str(dataset_dir), "--mask", "odom", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [m["mask"] for m in document["masks"]] == ["odom"] and 0 <= document["mean_accuracy"] <= 1


def test_a_real_sigint_during_training(dataset_dir: Path, tmp_path: Path) -> None:
    """The signal itself, not a simulation: sent once the first epoch has been reported."""
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out_file = tmp_path / "m.safetensors"
    # a shell starts background jobs with SIGINT ignored (nohup ... &), and an ignored signal stays
    # ignored across exec: the child gets the default, as a user's terminal gives it
    proc = subprocess.Popen([sys.executable, "-m", "edgemoe.cli", "train", "--data", str(dataset_dir),
                             "--out", str(out_file), "--epochs", "200", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
                            env=dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stderr is not None
        lines = iter(proc.stderr.readline, "")
        first = next(line for line in lines if not line.startswith(("1 process(es)", "INFO")))
        assert first.startswith("epoch   1/200"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and out == "" and "Traceback" not in err
    assert err.strip().splitlines()[-1] == INTERRUPTED_TRAIN
    # the signal may land before or after epoch 1's checkpoint is renamed into place, never inside
    assert [p.name for p in tmp_path.iterdir()] in ([], [out_file.name])
