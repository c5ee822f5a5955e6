"""Flood bar of the daemon: loop rate, latency p99 and RSS at 1x vs 10x the nominal sensor rates.

Runs ``edgemoe run`` as a subprocess (fixed 50 Hz schedule, JSON-lines sink), sends every sensor
at its nominal rate for SECONDS (unloaded), then at 10x for SECONDS (loaded), and compares:
predictions per second, runtime latency p50/p99, tick-interval p99, daemon RSS growth.

    PYTHONPATH=. python benchmarks/daemon_flood.py ENGINES --seconds 30 --md benchmarks/results/daemon_flood.md
    PYTHONPATH=. python benchmarks/daemon_flood.py ENGINES --short     # 2 s per phase, for CI
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgemoe.core.bundle import read_engine_manifest  # noqa: E402
from edgemoe.daemon.client import FrameSender, send_at_rates  # noqa: E402

RATE_HZ = 50.0


def send_phase(sender: FrameSender, config: Any, seconds: float, scale: float) -> int:
    rng = np.random.default_rng(0)
    frames = {s.name: rng.standard_normal(s.shape).astype(np.float32) for s in config.sensors}
    return send_at_rates(sender, frames, {s.name: s.rate_hz for s in config.sensors}, seconds, scale)


def phase_stats(records: list[dict[str, Any]], t0: float, t1: float) -> dict[str, float]:
    rows = [r for r in records if t0 <= r["mono"] < t1]
    lat = np.array([r["latency_ms"] for r in rows])
    ticks = np.diff([r["mono"] for r in rows]) * 1e3
    return {"predictions": len(rows), "rate_hz": len(rows) / (t1 - t0),
            "lat_p50_ms": float(np.percentile(lat, 50)), "lat_p99_ms": float(np.percentile(lat, 99)),
            "tick_p99_ms": float(np.percentile(ticks, 99)), "full_mask": float(np.mean([r["mask"] == 15 for r in rows]))}


def run(engines: Path, seconds: float, warm_s: float = 1.0) -> dict[str, Any]:
    config = read_engine_manifest(engines).config
    tmp = Path(tempfile.mkdtemp(prefix="edgemoe-flood-"))
    cfg = {"sources": {"network": [{"port": 0}]}, "sinks": {"jsonl": {"path": str(tmp / "pred.jsonl"),
           "flush_every": 50}}, "metrics": {"enabled": False}, "loop": {"schedule": "fixed", "rate_hz": RATE_HZ}}
    (tmp / "daemon.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "edgemoe.cli", "run", str(engines), "--config",
                             str(tmp / "daemon.yaml"), "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    ready = json.loads(proc.stdout.readline())["ready"]  # type: ignore[union-attr]
    _, host, port = ready["sources"][0].split(":")
    rss = psutil.Process(proc.pid)
    with FrameSender((host, int(port)), config.sensor_names) as sender:
        send_phase(sender, config, warm_s, 1.0)
        t0 = time.monotonic()
        sent_1x = send_phase(sender, config, seconds, 1.0)
        t1 = time.monotonic()
        rss_start = rss.memory_info().rss
        rss_samples = [rss_start]
        sent_10x = 0
        while time.monotonic() < t1 + seconds:
            sent_10x += send_phase(sender, config, min(1.0, t1 + seconds - time.monotonic()), 10.0)
            rss_samples.append(rss.memory_info().rss)
        t2 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    summary = json.loads(out.splitlines()[-1])["stopped"]
    records = [json.loads(line) for line in (tmp / "pred.jsonl").read_text().splitlines()]
    return {"seconds": seconds, "unloaded": phase_stats(records, t0, t1), "loaded": phase_stats(records, t1, t2),
            "sent_1x": sent_1x, "sent_10x": sent_10x, "datagrams": summary["datagrams"], "drops": summary["drops"],
            "rss_start_mb": rss_start / 2**20, "rss_end_mb": rss_samples[-1] / 2**20,
            "rss_growth_mb": (rss_samples[-1] - rss_start) / 2**20, "rss_max_mb": max(rss_samples) / 2**20,
            "nominal_hz": {s.name: s.rate_hz for s in config.sensors}}


def markdown(result: dict[str, Any]) -> str:
    u, lo = result["unloaded"], result["loaded"]
    ratio = lo["lat_p99_ms"] / u["lat_p99_ms"]
    rows = [("loop rate (predictions/s, target 50)", u["rate_hz"], lo["rate_hz"]),
            ("runtime latency p50 (ms)", u["lat_p50_ms"], lo["lat_p50_ms"]),
            ("runtime latency p99 (ms)", u["lat_p99_ms"], lo["lat_p99_ms"]),
            ("tick interval p99 (ms, nominal 20)", u["tick_p99_ms"], lo["tick_p99_ms"]),
            ("share of predictions with all 4 sensors", u["full_mask"], lo["full_mask"])]
    lines = [f"# Daemon flood: 1x vs 10x nominal sensor rates, {result['seconds']:.0f} s each", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}; "
             "fixed 50 Hz schedule, ONNX Runtime CPU engines, JSON-lines sink.",
             f"Nominal rates (Hz): {result['nominal_hz']}. Datagrams sent: {result['sent_1x']} at 1x, "
             f"{result['sent_10x']} at 10x; daemon counted {result['datagrams']} (drops: {result['drops']}).", "",
             "| metric | unloaded (1x) | loaded (10x) |", "|---|---|---|"]
    lines += [f"| {name} | {a:.3f} | {b:.3f} |" for name, a, b in rows]
    lines += ["", f"- latency p99 loaded / unloaded: **{ratio:.2f}x** (bar: <= 2x)",
              f"- loop rate kept: **{lo['rate_hz'] / u['rate_hz'] * 100:.1f}%** of unloaded",
              f"- daemon RSS over the 10x phase: {result['rss_start_mb']:.1f} MB -> {result['rss_end_mb']:.1f} MB "
              f"(growth **{result['rss_growth_mb']:+.2f} MB**, max {result['rss_max_mb']:.1f} MB)", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", type=Path)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--short", action="store_true", help="2 s per phase (CI)")
    parser.add_argument("--md", type=Path, default=None, help="write the Markdown result here")
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = parser.parse_args()
    result = run(args.engines, 2.0 if args.short else args.seconds)
    text = markdown(result)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    print(json.dumps(result) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
