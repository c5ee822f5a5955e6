"""The environment a profile was taken in, recorded with every report.

CPU model, cores and the threads this process may use, ONNX Runtime's version and settings, the
load average (other work on the machine is the first suspect of a noisy number), and on a Jetson
the power mode (``nvpmodel -q``), whether ``jetson_clocks`` pinned the clocks, and ``tegrastats``
samples taken during the run. A tool that is absent is recorded as skipped, with the reason.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

TOOL_TIMEOUT_S = 10.0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_tool(argv: list[str]) -> dict[str, Any]:
    """Output of a system tool, or why it was skipped."""
    if shutil.which(argv[0]) is None:
        return {"skipped": f"'{argv[0]}' not found on PATH (not a Jetson, or JetPack tools not installed)"}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"skipped": f"'{' '.join(argv)}' failed: {exc}"}
    text = (done.stdout or done.stderr).strip()
    return {"returncode": done.returncode, "output": text[-2000:]}


def gpu_memory() -> dict[str, Any]:
    """Device memory used by this process, where an NVIDIA GPU and nvidia-smi exist."""
    if shutil.which("nvidia-smi") is None:
        return {"skipped": "no 'nvidia-smi' (no discrete NVIDIA GPU; on a Jetson see tegrastats RAM)"}
    got = run_tool(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    if "output" not in got:
        return got
    mine = [line for line in got["output"].splitlines() if line.split(",")[0].strip() == str(os.getpid())]
    return {"process_mib": float(mine[0].split(",")[1]) if mine else 0.0, "raw": got["output"]}


def describe(ort_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything about the machine and the runtime settings that moves a latency number."""
    import onnxruntime as ort

    env = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
                       if k in os.environ},
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "onnxruntime_settings": dict(ort_settings or {}),
        "jetson": {"nvpmodel": run_tool(["nvpmodel", "-q"]), "jetson_clocks": run_tool(["jetson_clocks", "--show"])},
        "gpu_memory": gpu_memory(),
    }
    return env


class Tegrastats:
    """Samples ``tegrastats`` in the background for the length of a ``with`` block."""

    def __init__(self, interval_ms: int = 500, keep: int = 200) -> None:
        self.interval_ms, self.keep = interval_ms, keep
        self.samples: list[str] = []
        self.skipped: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Tegrastats:
        if shutil.which("tegrastats") is None:
            self.skipped = "'tegrastats' not found on PATH (not a Jetson)"
            return self
        try:
            self._proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)],
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError as exc:
            self.skipped = f"tegrastats failed to start: {exc}"
            return self
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if len(self.samples) < self.keep:
                self.samples.append(line.strip())

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped} if self.skipped else {"interval_ms": self.interval_ms, "samples": self.samples}
