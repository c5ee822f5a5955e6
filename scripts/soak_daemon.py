"""Soak the daemon (not in CI): run it for a configurable time under nominal sensor traffic and
report RSS growth and latency drift (first vs last tenth of the run).

    PYTHONPATH=. python scripts/soak_daemon.py ENGINES --minutes 60 [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgemoe.core.bundle import read_engine_manifest  # noqa: E402
from edgemoe.daemon.client import FrameSender  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", type=Path)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiple of the nominal sensor rates")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    args = parser.parse_args()
    config = read_engine_manifest(args.engines).config
    tmp = Path(tempfile.mkdtemp(prefix="edgemoe-soak-"))
    sink = tmp / "pred.jsonl"
    (tmp / "daemon.yaml").write_text(yaml.safe_dump({
        "sources": {"network": [{"port": 0}]}, "metrics": {"enabled": False},
        "sinks": {"jsonl": {"path": str(sink), "flush_every": 50, "max_bytes": 10**9}}}))
    proc = subprocess.Popen([sys.executable, "-m", "edgemoe.cli", "run", str(args.engines), "--config",
                             str(tmp / "daemon.yaml"), "--log-level", "WARNING"], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    _, host, port = json.loads(proc.stdout.readline())["ready"]["sources"][0].split(":")  # type: ignore[union-attr]
    rss = psutil.Process(proc.pid)
    rng = np.random.default_rng(0)
    periods = {s.name: 1.0 / (s.rate_hz * args.scale) for s in config.sensors}
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    end = start + args.minutes * 60
    due = dict.fromkeys(periods, start)
    next_sample = start
    try:
        with FrameSender((host, int(port)), config.sensor_names) as sender:
            while (now := time.monotonic()) < end:
                for s in config.sensors:
                    while due[s.name] <= now:
                        due[s.name] += periods[s.name]
                        sender.send(s.name, rng.standard_normal(s.shape).astype(np.float32))
                if now >= next_sample:
                    samples.append((now - start, rss.memory_info().rss / 2**20))
                    print(f"t={samples[-1][0]:7.0f}s rss={samples[-1][1]:.1f} MB", flush=True)
                    next_sample += args.sample_s
                time.sleep(max(0.0, min(due.values()) - time.monotonic()))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    records = [json.loads(line) for line in sink.read_text().splitlines()]
    lat = np.array([r["latency_ms"] for r in records])
    tenth = max(1, len(lat) // 10)
    first, last = lat[:tenth], lat[-tenth:]
    report = {
        "minutes": args.minutes, "predictions": len(records), "summary": json.loads(out.splitlines()[-1])["stopped"],
        "rss_first_mb": samples[0][1], "rss_last_mb": samples[-1][1],
        "rss_growth_mb": samples[-1][1] - samples[min(1, len(samples) - 1)][1],  # after warm-up sample
        "latency_p50_ms_first_last": [float(np.median(first)), float(np.median(last))],
        "latency_p99_ms_first_last": [float(np.percentile(first, 99)), float(np.percentile(last, 99))],
    }
    report["latency_p99_drift"] = report["latency_p99_ms_first_last"][1] / report["latency_p99_ms_first_last"][0]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
