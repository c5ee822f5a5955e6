"""The flood benchmark's short mode runs end to end: the loop keeps its rate under 10x load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.daemon_helpers import ROOT


def test_flood_benchmark_short_mode(engines_dir: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "daemon_flood.py"), str(engines_dir),
                          "--short", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["loaded"]["rate_hz"] >= 0.8 * result["unloaded"]["rate_hz"]
    assert result["datagrams"] >= 0.95 * (result["sent_1x"] + result["sent_10x"])
    assert result["rss_growth_mb"] < 20
