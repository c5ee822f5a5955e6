#!/usr/bin/env python3
"""Tight loop vs sensor rate: the same ``Runtime.run`` call, timed back to back and on a fixed
schedule (as the daemon calls it), interleaved in one process. The gap is what a robot sees
beyond the tight-loop figure; timing only the call excludes the tracker, copies and the sink.

Variants: ``tight`` (calls back to back), ``paced`` (sleep to each tick of ``--hz``, then call),
``spin`` (busy-wait to each tick: no sleep/wake-up of the thread), ``prewarm`` (an untimed call
``--lead-ms`` before each tick, then the timed one).

    python benchmarks/bench_paced.py --engines runs/engines/cpu --mask 15 --hz 20
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgemoe.core.mask import full_mask, mask_label  # noqa: E402
from edgemoe.profile.environment import cpu_model  # noqa: E402
from edgemoe.profile.timing import at_rate, back_to_back  # noqa: E402
from edgemoe.runtime.runtime import Runtime  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=Path, required=True)
    parser.add_argument("--mask", type=int, default=None, help="default: every sensor")
    parser.add_argument("--hz", type=float, default=20.0)
    parser.add_argument("--frames", type=int, default=30, help="paced frames per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lead-ms", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/paced_vs_tight.md"))
    args = parser.parse_args()
    runtime = Runtime.load(args.engines)
    mask = args.mask or full_mask(len(runtime.sensor_names))
    rng = np.random.default_rng(0)
    frames = {i: rng.standard_normal((1, *s.shape)).astype(np.float32) for i, s in enumerate(runtime.config.sensors)}

    def call() -> object:
        return runtime.run(mask, frames)

    back_to_back(call, 50)
    samples: dict[str, list[float]] = {"tight": [], "paced": [], "spin": [], "prewarm": []}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        samples["tight"] += back_to_back(call, 10 * args.frames)
        samples["paced"] += at_rate(call, args.frames, args.hz, "sleep")
        for wait in ("spin", "prewarm"):
            samples[wait] += at_rate(call, args.frames, args.hz, wait, args.lead_ms / 1e3)
        load.append(os.getloadavg()[0])
    base = float(np.median(samples["tight"]))
    lines = [f"# `Runtime.run` in a tight loop vs at {args.hz:g} Hz (batch 1)", "",
             f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_paced.py {' '.join(sys.argv[1:])}`", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores shared with other jobs, 1-min load average "
             f"{min(load):.1f}–{max(load):.1f}. Mask {mask_label(mask, runtime.sensor_names)}; "
             f"engines {args.engines}; {args.rounds} interleaved rounds.", "",
             "| variant | p50 µs | p99 µs | p50 / tight p50 | frames |", "|---|---:|---:|---:|---:|"]
    for name, took in samples.items():
        us = np.asarray(took) * 1e6
        lines.append(f"| {name} | {np.median(us):.0f} | {np.percentile(us, 99):.0f} | "
                     f"{np.median(took) / base:.2f} | {us.size} |")
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
