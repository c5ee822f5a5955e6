"""The flood benchmark's short mode runs end to end and reports what it measured.

How the rates compare is the benchmark's finding (benchmarks/results/daemon_flood.md, recorded on a
quiet machine), not a test: on a loaded CI machine the ratio says more about the neighbours."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.daemon_helpers import ROOT
from tests.polling import HANG_S


def test_flood_benchmark_short_mode(engines_dir: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "daemon_flood.py"), str(engines_dir),
                          "--short", "--gap-rate-hz", "200", "--prewarm-ms", "2", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=HANG_S,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["loaded"]["rate_hz"] > 0 and result["unloaded"]["rate_hz"] > 0
    assert result["datagrams"] > 0 and result["sent_1x"] > 0 and result["sent_10x"] > 0
    gap = result["gap"]  # the daemon at another rate and the tight loop were both timed
    assert gap["fast"]["predictions"] > 0 and gap["prewarmed"]["predictions"] > 0 and 0 < gap["tight"]["lat_p50_ms"] <= gap["tight"]["lat_p99_ms"]
    assert result["rss_growth_mb"] < 20  # memory, not speed: a leak under flood grows it on any machine
