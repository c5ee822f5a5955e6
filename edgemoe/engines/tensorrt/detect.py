"""Is a real TensorRT here, and a GPU it can use?

``import tensorrt`` alone proves nothing: the type stubs (``tensorrt-stubs``) install a
``tensorrt`` directory with no ``__init__.py``, which Python imports as an empty namespace package.
A real TensorRT has ``tensorrt.Builder``. Creating a TensorRT runtime without a usable GPU can
abort the whole process, so the full probe runs in a subprocess and reports back as JSON.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgemoe.core.errors import ConfigError, EngineError

INSTALL_HINT = ("install TensorRT's Python bindings (JetPack ships them as python3-libnvinfer; on x86 "
                "'pip install tensorrt' from NVIDIA's index) and cuda-python ('pip install cuda-python')")


def is_real_tensorrt(module: object) -> bool:
    """The stubs package and a failed partial install both lack ``Builder``."""
    return hasattr(module, "Builder") and hasattr(module, "Runtime")


def load_tensorrt() -> ModuleType:
    """The real ``tensorrt`` module, or an :class:`EngineError` saying what to install."""
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as exc:
        raise EngineError(f"backend 'tensorrt': TensorRT is not installed ({exc}); {INSTALL_HINT}") from None
    if not is_real_tensorrt(module):
        where = getattr(module, "__path__", None) or getattr(module, "__file__", "?")
        raise EngineError(f"backend 'tensorrt': 'tensorrt' at {list(where) if where else '?'} is not TensorRT "
                          f"(no tensorrt.Builder: type stubs or a broken install); {INSTALL_HINT}")
    return module


def load_cudart() -> ModuleType:
    """NVIDIA's ``cuda.bindings.runtime`` (cuda-python >= 12.6; older releases: ``cuda.cudart``)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise EngineError(f"backend 'tensorrt': cuda-python is not installed; {INSTALL_HINT}")


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; non-numeric tails are dropped."""
    parts = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.group() != part:  # "35post1", "0rc1": the numeric release ends here
            break
    return tuple(parts)


@dataclass(frozen=True)
class Probe:
    """What a subprocess found: ``gpu`` (CUDA device usable), ``tensorrt`` (real TRT + runtime)."""

    gpu: bool
    tensorrt: bool
    facts: dict[str, Any]
    reason: str


_PROBE = r"""
import json, sys
out = {"gpu": False, "tensorrt": False, "facts": {}, "reason": ""}
try:
    from cuda.bindings import runtime as cudart
except ImportError:
    try:
        from cuda import cudart
    except ImportError as exc:
        out["reason"] = f"cuda-python not installed ({exc})"
        print(json.dumps(out)); sys.exit(0)
err, count = cudart.cudaGetDeviceCount()
if int(err) != 0 or count < 1:
    out["reason"] = f"no usable CUDA device (cudaGetDeviceCount: {err}, count {count})"
    print(json.dumps(out)); sys.exit(0)
err, prop = cudart.cudaGetDeviceProperties(0)
name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
out["gpu"] = True
out["facts"].update(gpu=name.strip("\x00"), compute_capability=f"{prop.major}.{prop.minor}",
                    integrated=bool(prop.integrated))
try:
    import tensorrt as trt
except ImportError as exc:
    out["reason"] = f"TensorRT not installed ({exc})"
    print(json.dumps(out)); sys.exit(0)
if not hasattr(trt, "Builder"):
    out["reason"] = "the 'tensorrt' module has no Builder (type stubs or a broken install, not TensorRT)"
    print(json.dumps(out)); sys.exit(0)
logger = trt.Logger(trt.Logger.ERROR)
runtime = trt.Runtime(logger)
out["facts"]["tensorrt"] = trt.__version__
out["facts"]["dla_cores"] = int(runtime.num_DLA_cores)
out["tensorrt"] = True
print(json.dumps(out))
"""


def probe_device(timeout: float = 120.0) -> Probe:
    """Probe CUDA and TensorRT in a child process (a crash there cannot take us down)."""
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Probe(False, False, {}, f"the device probe hung for {timeout:.0f} s")
    return parse_probe(done.returncode, done.stdout, done.stderr)


def parse_probe(returncode: int, stdout: str, stderr: str) -> Probe:
    """Interpret the child's exit: JSON on its last line, or a crash (signal / non-zero exit)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return Probe(False, False, {}, f"the device probe exited with status {returncode}: {tail}")
    try:
        data = json.loads(lines[-1])
    except json.JSONDecodeError:
        return Probe(False, False, {}, f"the device probe printed no result: {lines[-1][:200]}")
    return Probe(bool(data["gpu"]), bool(data["tensorrt"]), dict(data["facts"]), str(data["reason"]))


DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
TEGRA_RELEASE = Path("/etc/nv_tegra_release")
# Substrings of the device-tree model -> target profile. Checked in order: "AGX Orin" before "Orin".
MODULE_PROFILES = (("AGX Orin", "jetson-agx-orin"), ("Orin Nano", "jetson-orin-nano"), ("Thor", "jetson-thor"))


def jetson_module(model_file: Path = DEVICE_TREE_MODEL) -> str | None:
    """The Jetson module's name (``NVIDIA Jetson AGX Orin Developer Kit``), or None off Jetson."""
    try:
        return model_file.read_bytes().decode(errors="replace").split("\x00")[0].strip() or None
    except OSError:
        return None


def profile_for_module(module: str | None, tegra: bool) -> str:
    """The target profile for this machine, refusing to guess: an Orin NX (or any module without a
    profile) must be named explicitly, since a profile sized for another module builds engines
    that do not fit it (memory) or miss its DLA cores."""
    if module is None:
        if tegra:
            raise ConfigError(f"this is a Jetson ({TEGRA_RELEASE} exists) but {DEVICE_TREE_MODEL} is unreadable; "
                              "name the target profile explicitly")
        return "x86-gpu"
    for part, profile in MODULE_PROFILES:
        if part.lower() in module.lower():
            return profile
    raise ConfigError(f"no target profile for the module '{module}' (known: "
                      f"{', '.join(p for _, p in MODULE_PROFILES)}); name one explicitly or add engines/<name>.yaml")


def print_profile() -> int:
    """Print this machine's target profile (exit 0) or why there is none (exit 2), for the scripts."""
    try:
        print(profile_for_module(jetson_module(), TEGRA_RELEASE.is_file()))
    except ConfigError as exc:
        print(f"ConfigError: {exc}", file=sys.stderr)
        return 2
    return 0

