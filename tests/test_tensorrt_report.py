"""The on-device build report, from a manifest; and the build script end to end on the CPU target."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgemoe.engines.tensorrt.report import build_report
from tests.polling import HANG_S

ROOT = Path(__file__).resolve().parents[1]

MANIFEST = {
    "target": {"name": "jetson-agx-orin"}, "backend": "tensorrt", "created": "2026-01-01T00:00:00+00:00",
    "environment": {"gpu": "Orin", "compute_capability": "8.7", "tensorrt": "10.3.0.30", "cuda_runtime": "12.6",
                    "jetpack": "6.1/6.2", "l4t": "36.4.0"},
    "engines": {
        "encoder[camera]": {"precision": "int8", "strongly_typed": True, "static": True, "build_seconds": 12.25,
                            "engine_bytes": 3 * 2**20, "device_memory_size": 2**20,
                            "dla": {"dla_layers": ["{ForeignNode[a...b]}"], "gpu_layers": 2,
                                    "fell_back_to_gpu": ["/pool/ReduceMean"]}},
        "encoder[imu]": {"precision": "fp32", "strongly_typed": True, "static": True, "build_seconds": 0.0,
                         "engine_bytes": 0, "device_memory_size": 0, "dla": {"skipped": "fp32 has no DLA"}},
        "gate": {"precision": "fp16", "strongly_typed": False, "builder_flags": ["FP16"], "static": False,
                 "build_seconds": 3.0, "engine_bytes": 2**19, "device_memory_size": 2**21},
    },
}


def test_the_report_lists_every_stage_with_its_numbers() -> None:
    text = build_report(MANIFEST)
    assert "GPU Orin (SM 8.7), TensorRT 10.3.0.30, CUDA 12.6, JetPack 6.1/6.2 (L4T 36.4.0)" in text
    assert ("| encoder[camera] | int8 | strong | yes | 12.2 | 3.00 | 1.00 | 1 on DLA, 2 on GPU; fell back: "
            "/pool/ReduceMean |") in text
    assert "| gate | fp16 | FP16 | no | 3.0 | 0.50 | 2.00 | - |" in text
    assert "| encoder[imu] | fp32 | strong | yes | 0.0 | 0.00 | 0.00 | GPU (fp32 has no DLA) |" in text
    assert "Total build time 15.2 s. Scratch memory: largest engine 2.00 MiB (shared), sum 3.00 MiB." in text


def test_the_build_script_runs_end_to_end_on_the_cpu_target(bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "built" / "cpu"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    done = subprocess.run(["bash", str(ROOT / "scripts/build_engines_on_device.sh"), str(bundle_dir), "cpu", str(out)],
                          capture_output=True, text=True, env=env, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "built" / "cpu.build-report.md").read_text()
    assert "# Engine build: target 'cpu' (onnxruntime)" in report and "| gate | fp32 |" in report
    assert "probe:" in report and "TensorRT:" in report  # the versions section says what it found
    assert (out / "manifest.json").is_file()
