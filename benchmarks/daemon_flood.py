"""Flood bar of the daemon: loop rate, latency p99 and RSS at 1x vs 10x the nominal sensor rates.

Runs ``edgemoe run`` as a subprocess (fixed 50 Hz schedule, JSON-lines sink), sends every sensor
at its nominal rate for SECONDS (unloaded), then at 10x for SECONDS (loaded), and compares:
predictions per second, runtime latency p50/p99, tick-interval p99, daemon RSS growth.

``latency_ms`` in the daemon's records times ``Runtime.run`` alone (no tracker copies, no sink
writes), yet it is several times the tight-loop figure. ``--gap-rate-hz`` shows where that goes:
the same call timed back to back in this process, and the daemon again at a much faster schedule.
If the call is slow only when calls are far apart, the gap is the idle time between ticks (caches,
TLB and branch predictors gone cold), not the daemon's code.

    PYTHONPATH=. python benchmarks/daemon_flood.py ENGINES --seconds 30 --md benchmarks/results/daemon_flood.md
    PYTHONPATH=. python benchmarks/daemon_flood.py ENGINES --short     # 2 s per phase, for CI
    PYTHONPATH=. python benchmarks/daemon_flood.py ENGINES --gap-rate-hz 1000 --prewarm-ms 2  # + where the latency goes
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
from edgemoe.core.mask import full_mask  # noqa: E402
from edgemoe.daemon.client import FrameSender, send_at_rates  # noqa: E402
from edgemoe.profile.timing import back_to_back  # noqa: E402
from edgemoe.runtime.runtime import Runtime  # noqa: E402

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


def run(engines: Path, seconds: float, rate_hz: float = RATE_HZ, prewarm_ms: float = 0.0,
        warm_s: float = 1.0) -> dict[str, Any]:
    config = read_engine_manifest(engines).config
    tmp = Path(tempfile.mkdtemp(prefix="edgemoe-flood-"))
    cfg = {"sources": {"network": [{"port": 0}]}, "sinks": {"jsonl": {"path": str(tmp / "pred.jsonl"),
           "flush_every": 50}}, "metrics": {"enabled": False}, "loop": {"schedule": "fixed", "rate_hz": rate_hz, "prewarm_ms": prewarm_ms}}
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
            "nominal_hz": {s.name: s.rate_hz for s in config.sensors}, "rate_hz": rate_hz}


def tight_loop_ms(engines: Path, calls: int = 2000) -> dict[str, float]:
    """``Runtime.run`` on the full mask, back to back in this process: p50/p99 ms."""
    runtime = Runtime.load(engines)
    rng = np.random.default_rng(0)
    frames = {i: rng.standard_normal((1, *s.shape)).astype(np.float32) for i, s in enumerate(runtime.config.sensors)}
    full = full_mask(len(frames))
    took = back_to_back(lambda: runtime.run(full, frames), calls)
    runtime.close()
    lat = np.array(took[calls // 10:]) * 1e3  # the first tenth warms up
    return {"lat_p50_ms": float(np.percentile(lat, 50)), "lat_p99_ms": float(np.percentile(lat, 99))}


def gap_markdown(result: dict[str, Any]) -> list[str]:
    nominal, fast, tight = result["unloaded"], result["gap"]["fast"], result["gap"]["tight"]
    rows = [(f"daemon, fixed {result['rate_hz']:g} Hz (the run above, 1x)", nominal),
            (f"daemon, fixed {result['gap']['rate_hz']:g} Hz", fast), ("`Runtime.run` back to back, in-process", tight)]
    if "prewarmed" in result["gap"]:
        rows.insert(1, (f"daemon, fixed {result['rate_hz']:g} Hz, `loop.prewarm_ms: {result['gap']['prewarm_ms']:g}`",
                        result["gap"]["prewarmed"]))
    lines = ["## Where the daemon's latency goes", "",
             "`latency_ms` times `Runtime.run` alone (tracker copies and sink writes are outside it), "
             "so the gap to the tight loop is in the call itself. The same bundle, full mask:", "",
             "| how the call is made | p50 ms | p99 ms | p50 / tight p50 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {r['lat_p50_ms']:.3f} | {r['lat_p99_ms']:.3f} | "
              f"{r['lat_p50_ms'] / tight['lat_p50_ms']:.2f} |" for name, r in rows]
    return lines + ["", "The call slows as the time between calls grows: the idle gap lets caches, TLB and "
                    "branch predictors go cold (`benchmarks/bench_paced.py` shows the same in-process, "
                    "without any daemon code). `loop.prewarm_ms` runs the mask once, untimed, that long "
                    "before each tick, at the cost of one more inference per tick.", ""]


def markdown(result: dict[str, Any]) -> str:
    u, lo = result["unloaded"], result["loaded"]
    ratio = lo["lat_p99_ms"] / u["lat_p99_ms"]
    hz = result["rate_hz"]
    rows = [(f"loop rate (predictions/s, target {hz:g})", u["rate_hz"], lo["rate_hz"]),
            ("runtime latency p50 (ms)", u["lat_p50_ms"], lo["lat_p50_ms"]),
            ("runtime latency p99 (ms)", u["lat_p99_ms"], lo["lat_p99_ms"]),
            (f"tick interval p99 (ms, nominal {1e3 / hz:g})", u["tick_p99_ms"], lo["tick_p99_ms"]),
            ("share of predictions with all 4 sensors", u["full_mask"], lo["full_mask"])]
    lines = [f"# Daemon flood: 1x vs 10x nominal sensor rates, {result['seconds']:.0f} s each", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}; "
             f"fixed {hz:g} Hz schedule, ONNX Runtime CPU engines, JSON-lines sink.",
             f"Nominal rates (Hz): {result['nominal_hz']}. Datagrams sent: {result['sent_1x']} at 1x, "
             f"{result['sent_10x']} at 10x; daemon counted {result['datagrams']} (drops: {result['drops']}).", "",
             "| metric | unloaded (1x) | loaded (10x) |", "|---|---|---|"]
    lines += [f"| {name} | {a:.3f} | {b:.3f} |" for name, a, b in rows]
    lines += ["", f"- latency p99 loaded / unloaded: **{ratio:.2f}x** (bar: <= 2x)",
              f"- loop rate kept: **{lo['rate_hz'] / u['rate_hz'] * 100:.1f}%** of unloaded",
              f"- daemon RSS over the 10x phase: {result['rss_start_mb']:.1f} MB -> {result['rss_end_mb']:.1f} MB "
              f"(growth **{result['rss_growth_mb']:+.2f} MB**, max {result['rss_max_mb']:.1f} MB)", ""]
    if "gap" in result:
        lines += gap_markdown(result)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", type=Path)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--short", action="store_true", help="2 s per phase (CI)")
    parser.add_argument("--rate-hz", type=float, default=RATE_HZ, help="the daemon's fixed prediction rate")
    parser.add_argument("--gap-rate-hz", type=float, default=None,
                        help="also time the daemon at this rate and Runtime.run in a tight loop")
    parser.add_argument("--prewarm-ms", type=float, default=0.0,
                        help="with --gap-rate-hz: also time the daemon at the nominal rate with this prewarm")
    parser.add_argument("--md", type=Path, default=None, help="write the Markdown result here")
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = parser.parse_args()
    seconds = 2.0 if args.short else args.seconds
    result = run(args.engines, seconds, args.rate_hz)
    if args.gap_rate_hz:
        fast = run(args.engines, seconds, args.gap_rate_hz)
        result["gap"] = {"rate_hz": args.gap_rate_hz, "fast": fast["unloaded"], "tight": tight_loop_ms(args.engines)}
        if args.prewarm_ms:
            prewarmed = run(args.engines, seconds, args.rate_hz, args.prewarm_ms)
            result["gap"].update(prewarm_ms=args.prewarm_ms, prewarmed=prewarmed["unloaded"])
    text = markdown(result)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    print(json.dumps(result) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
