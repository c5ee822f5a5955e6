"""Installed as a user installs it: the wheel, in a fresh environment without PyTorch, used from an
empty directory. Nothing of the source checkout is importable there (no PYTHONPATH, another cwd),
so target profiles, calibration recipes and configs must come with the wheel.

Needs the package index (pip installs numpy, onnxruntime, pydantic, ... into the new environment;
pip's cache makes later runs fast).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from edgemoe.cli import VERBS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DEVICE_VERBS = ("data", "build", "infer", "profile", "run", "completion")
WORKSTATION_VERBS = {  # verb -> arguments that get it past parsing; each needs the train extra
    "train": ["--data", "d", "--out", "m.safetensors"],
    "eval": ["m.safetensors", "--data", "d"],
    "export": ["m.safetensors", "--out", "bundle"],
    "calibrate": ["bundle", "--data", "d"],
    "bench": ["accuracy", "--data", "d"],
    "demo": [],
}


class Installed:
    """The ``edgemoe`` command of one virtual environment, run from an empty directory."""

    def __init__(self, venv: Path, cwd: Path, wheel: Path) -> None:
        self.venv, self.cwd, self.wheel = venv, cwd, wheel
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env.update(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
                        PIP_DISABLE_PIP_VERSION_CHECK="1")

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "edgemoe"), *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.venv / "bin" / "python"), "-c", code], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def pip_install(self, *requirements: str) -> None:
        done = subprocess.run([sys.executable, "-m", "pip", "--python", str(self.venv / "bin" / "python"),
                               "install", "-q", *requirements], env=self.env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from what the layout declares (the package, engines/, calibration/)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "edgemoe", src / "edgemoe", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("engines", "calibration"):
        (src / folder).mkdir()
        for path in [*(ROOT / folder).glob("*.yaml"), ROOT / folder / "__init__.py"]:
            shutil.copy(path, src / folder / path.name)
    no_isolation = ["--no-build-isolation"] if _setuptools_major() >= 68 else []  # else pip fetches it
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *no_isolation, str(src),
                           "-w", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return next(out.glob("edgemoe-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    command = Installed(venv, tmp_path_factory.mktemp("empty"), wheel)
    command.pip_install(str(wheel))
    return command


def test_the_wheel_carries_every_subpackage_profile_and_recipe(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in (ROOT / "edgemoe").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names, f"{init.parent.name}: add it to pyproject's packages"
    for folder, package in (("engines", "targets"), ("calibration", "calibration_recipes")):
        for path in (ROOT / folder).glob("*.yaml"):
            assert f"edgemoe/{package}/{path.name}" in names


def test_no_torch_and_version_from_metadata(installed: Installed) -> None:
    done = installed.python("import importlib.util, importlib.metadata as m, edgemoe; "
                            "print(importlib.util.find_spec('torch') is None, edgemoe.__version__ == m.version('edgemoe'))")
    assert done.stdout.split() == ["True", "True"], done.stderr
    version = installed("--version")
    assert version.returncode == 0 and version.stdout.startswith("edgemoe ") and "torch not installed" in version.stdout


def test_every_verb_has_help(installed: Installed) -> None:
    for verb in VERBS:
        done = installed(verb, "--help")
        assert done.returncode == 0 and done.stdout.startswith(f"usage: edgemoe {verb}"), (verb, done.stderr)
        assert "``" not in done.stdout and ":func:" not in done.stdout, verb
    assert installed("data", "synth", "--help").returncode == 0


def test_workstation_verbs_name_the_extra(installed: Installed) -> None:
    for verb, args in WORKSTATION_VERBS.items():
        done = installed(verb, *args)
        assert done.returncode == 1, (verb, done.stderr)
        assert re.fullmatch(rf"edgemoe {verb}: error: needs the 'train' extra \(module '\w+' is not installed\): "
                            r"pip install 'edgemoe\[train\]'", one_error_line(done)), done.stderr
        assert done.stdout == ""
    assert not [p for p in installed.cwd.iterdir() if p.name != "engines-cpu"], "a refused verb wrote something"


@pytest.fixture(scope="module")
def cpu_engines(installed: Installed, bundle_dir: Path) -> Path:
    """``edgemoe build BUNDLE --out engines-cpu``: the default target, cpu, from the wheel's profiles."""
    build = installed("build", str(bundle_dir), "--out", "engines-cpu", "--json")
    assert build.returncode == 0, build.stderr
    summary = json.loads(build.stdout)
    assert summary["target"] == "cpu" and summary["stages"] == len(summary["timing"]) > 0
    return installed.cwd / "engines-cpu"


def test_device_verbs_from_an_empty_directory(installed: Installed, cpu_engines: Path, bundle_dir: Path,
                                              dataset_dir: Path) -> None:
    assert installed("build", "--list-targets").stdout.split()[0] == "cpu"
    infer = installed("infer", "engines-cpu", "--data", str(dataset_dir), "--mask", "camera+imu", "--json")
    assert infer.returncode == 0, infer.stderr
    assert json.loads(infer.stdout)["masks"][0]["mask"] == "camera+imu"

    profile = installed("profile", "engines-cpu", "--out", "prof", "--mask", "15", "--frames", "10",
                        "--rounds", "1", "--switch-frames", "4", "--no-progress")
    assert profile.returncode == 0, profile.stderr
    assert (installed.cwd / "prof" / "profile.json").is_file()

    trt = installed("build", str(bundle_dir), "--target", "jetson-orin-nano", "--out", "engines-orin")
    assert trt.returncode == 1 and "TensorRT is not installed" in one_error_line(trt)
    assert not (installed.cwd / "engines-orin").exists()


def test_run_names_the_daemon_extra_then_serves_with_it(installed: Installed, cpu_engines: Path,
                                                        dataset_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "daemon.yaml"
    config.write_text(yaml.safe_dump({
        "sources": {"replay": {"dataset": str(dataset_dir), "sample_period_s": 0.05}},
        "sinks": {"jsonl": {"path": str(tmp_path / "pred.jsonl")}},
        "metrics": {"port": 0}, "loop": {"rate_hz": 20},
    }))
    if installed.python("import prometheus_client").returncode == 0:
        pytest.fail("prometheus_client is installed without the daemon extra")
    refused = installed("run", str(cpu_engines), "--config", str(config), "--max-seconds", "2")
    assert refused.returncode == 1
    assert "needs the 'daemon' extra" in one_error_line(refused) and "edgemoe[daemon]" in refused.stderr

    installed.pip_install(f"edgemoe[daemon] @ {installed.wheel.as_uri()}")
    done = installed("run", str(cpu_engines), "--config", str(config), "--max-seconds", "3")
    assert done.returncode == 0, done.stderr
    ready, stopped = (json.loads(line) for line in done.stdout.splitlines())
    assert "ready" in ready and stopped["stopped"]["torch_imported"] is False
    assert len((tmp_path / "pred.jsonl").read_text().splitlines()) > 5


def test_an_editable_install_finds_them_too(tmp_path: Path) -> None:
    """``pip install -e .`` maps the same subpackages onto the checkout's folders."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    command = Installed(venv, tmp_path, ROOT)
    command.pip_install("--no-deps", "-e", str(ROOT))
    done = command.python("from importlib import resources; from edgemoe.packaged import CALIBRATION_RECIPES, TARGETS; "
                          "print(resources.files('edgemoe.targets')); print(TARGETS.names(), CALIBRATION_RECIPES.names())")
    assert done.returncode == 0, done.stderr
    location, names = done.stdout.splitlines()
    assert Path(location) == ROOT / "engines" and "jetson-orin-nano" in names and "'default'" in names
