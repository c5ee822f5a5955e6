"""The benchmark scripts run end to end (a short version): a benchmark is a script with a recorded
result under benchmarks/results/, and this proves the scripts still work, not how fast anything is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from tests.polling import HANG_S

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_S)


def test_runtime_benchmark_quick(checkpoint_path: Path, engines_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "runtime.md"
    done = run_script("benchmarks/bench_runtime.py", "--checkpoint", str(checkpoint_path), "--engines",
                      str(engines_dir), "--out", str(out), "--quick")
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "| camera+scan+imu+odom | 0 |" in text and "| odom | 3 |" in text
    assert "runtime ≤ 0.5× eager" in text and "dispatch overhead" in text and "mask switch" in text
    assert out.with_suffix(".png").stat().st_size > 0


def test_scale_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "scale.md"
    done = run_script("benchmarks/bench_scale.py", "--quick", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "for all 7 masks" in text and "MiB per stage engine" in text
    assert "| image0 | 1 |" in text
