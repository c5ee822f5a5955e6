#!/usr/bin/env python3
"""Scale: a model with 8 sensors and 16 experts (255 masks, 26 stage engines).

Measures, in one run:
- plan compile: the executor's per-mask programs for all 255 masks (target < 1 s);
- per-frame cost does not depend on the number of masks: the same frames through an executor that
  holds the programs of all 255 masks and one that holds only the measured mask's, interleaved;
- memory grows linearly with stages: RSS after each engine is loaded, with a least-squares line;
- the frame latency and dispatch share of this model per number of present sensors.
The weights are untrained (latency does not depend on them; routing of random weights is still
top-k over 16 experts).

    python benchmarks/bench_scale.py --out benchmarks/results/scale_8x16.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgemoe.core.mask import all_masks, full_mask, mask_label, present  # noqa: E402
from edgemoe.runtime.executor import PlanExecutor  # noqa: E402
from edgemoe.core.schema import ModelConfig  # noqa: E402
from edgemoe.profile.environment import cpu_model  # noqa: E402
from edgemoe.profile.measure import ProfileSettings, profile_engines  # noqa: E402
from edgemoe.profile.timing import rss_bytes  # noqa: E402
from edgemoe.runtime.loader import load_engine_bundle  # noqa: E402
from edgemoe.runtime.runtime import Runtime  # noqa: E402

KINDS = [("image", [1, 16, 16]), ("scan", [1, 64]), ("imu", [6, 32]), ("vector", [8])]


def scale_config(sensors: int, experts: int) -> ModelConfig:
    specs = [{"name": f"{kind}{i // len(KINDS)}", "kind": kind, "shape": shape, "rate_hz": 10}
             for i, (kind, shape) in ((i, KINDS[i % len(KINDS)]) for i in range(sensors))]
    return ModelConfig.from_dict({"name": f"scale{sensors}x{experts}", "num_classes": 8, "sensors": specs,
                                  "model": {"num_experts": experts, "top_k": 2}}, "bench_scale")


def build(config: ModelConfig, work: Path) -> Path:
    """Untrained model -> bundle -> CPU engines (export is the slow part: one graph per stage)."""
    import torch

    from edgemoe.engines.build import build_engines
    from edgemoe.engines.target import load_target
    from edgemoe.export.bundle import write_bundle
    from edgemoe.model.registry import build_model
    from edgemoe.train.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = build_model(config).eval()
    save_checkpoint(model, work / "model.safetensors", {})  # the bundle records its checkpoint's sha256
    write_bundle(load_checkpoint(work / "model.safetensors"), work / "bundle")
    build_engines(work / "bundle", load_target("cpu"), work / "engines")
    return work / "engines"


def compile_time(runtime: Runtime, repeats: int) -> list[float]:
    """Seconds to build every plan and every per-mask program from scratch."""
    layout, bundle = runtime.bundle.layout, runtime.bundle
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        PlanExecutor(layout, bundle.engines, bundle.max_batch, bundle.constants)  # compiles every mask
        times.append(time.perf_counter() - t0)
    return times


def per_frame_vs_masks(runtime: Runtime, masks: list[int], frames: int, rounds: int) -> dict[int, tuple[float, float]]:
    """p50 µs of ``executor.run`` for each mask: with all programs held vs only that one."""
    bundle = runtime.bundle
    rng = np.random.default_rng(0)
    out = {}
    for mask in masks:
        lone = PlanExecutor(bundle.layout, bundle.engines, bundle.max_batch, bundle.constants)
        lone.programs = {mask: lone.programs[mask]}  # the same executor holding one program
        feeds = [{i: rng.standard_normal((1, *runtime.config.sensors[i].shape)).astype(np.float32)
                  for i in present(mask, len(runtime.config.sensors))} for _ in range(frames)]
        took = {"all": [], "one": []}
        for _ in range(rounds):
            for name, ex in (("all", runtime.executor), ("one", lone)):
                for f in feeds:
                    t0 = time.perf_counter()
                    ex.run(mask, f)
                    took[name].append(time.perf_counter() - t0)
        out[mask] = (float(np.median(took["all"])) * 1e6, float(np.median(took["one"])) * 1e6,
                     len(runtime.executor.programs), len(lone.programs))
    return out


def memory_per_stage(engines: Path) -> tuple[list[tuple[str, float]], float, float, float]:
    """RSS (MiB) after each stage engine is loaded and warmed; slope, intercept and R² of a line."""
    points: list[tuple[str, float]] = []
    base = rss_bytes() / 2**20
    pending: list[str] = []

    def on_stage(stage: str) -> None:
        if pending:
            points.append((pending.pop(), rss_bytes() / 2**20))
        pending.append(stage)

    bundle = load_engine_bundle(engines, on_stage=on_stage)
    points.append((pending.pop(), rss_bytes() / 2**20))
    x = np.arange(1, len(points) + 1)
    y = np.array([p for _, p in points])
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - ((y - (slope * x + intercept)) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12)
    bundle.close()
    return points, float(slope), float(intercept - base), float(r2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--engines", type=Path, default=None,
                        help="engine bundle of this config: built there if missing, reused if present")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale_8x16.md"))
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny config and few frames: proves the script works")
    args = parser.parse_args()
    if args.quick:
        args.sensors, args.experts, args.frames, args.rounds = 3, 3, 5, 1
    config = scale_config(args.sensors, args.experts)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        reused = args.engines is not None and (args.engines / "manifest.json").is_file()
        if args.engines is None:
            engines = build(config, Path(tmp))
        elif not (args.engines / "manifest.json").is_file():
            engines = build(config, args.engines.parent / (args.engines.name + ".work"))
            (args.engines.parent / (args.engines.name + ".work") / "engines").rename(args.engines)
        else:
            engines = args.engines
        built_s = time.perf_counter() - t0
        points, slope, intercept, r2 = memory_per_stage(engines)
        runtime = Runtime.load(engines)
        m = config.num_sensors
        compile_s = compile_time(runtime, 3 if args.quick else 7)
        one_per_count = [full_mask(m)] + [next(k for k in all_masks(m) if bin(k).count("1") == c) for c in (1, m // 2)]
        frame = per_frame_vs_masks(runtime, sorted(set(one_per_count)), args.frames, args.rounds)
        profile = profile_engines(engines, ProfileSettings(masks=tuple(sorted(set(one_per_count))),
                                                           frames=args.frames, rounds=args.rounds,
                                                           switch_frames=max(8, args.frames // 2),
                                                           throughput_batches=2))
        runtime.close()
    lines = [
        f"# Scale: {m} sensors, {args.experts} experts ({len(all_masks(m))} masks, {len(points)} stage engines)", "",
        f"Command: `python benchmarks/bench_scale.py {' '.join(sys.argv[1:])}`", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, shared with other jobs (1-min load average "
        f"{os.getloadavg()[0]:.1f} at the end). Untrained weights; "
        + (f"engines reused from {engines}." if reused else f"engines built in {built_s:.0f} s (export + build).") + "", "",
        "## Plans for every mask", "",
        f"- executor programs for all {len(all_masks(m))} masks: median {np.median(compile_s) * 1e3:.1f} ms, "
        f"max {max(compile_s) * 1e3:.1f} ms over {len(compile_s)} repeats → {'< 1 s: met' if max(compile_s) < 1 else 'NOT met'}",
        f"- plans/programs are built at load; created after start during the profile: "
        f"{profile['summary']['compiled_after_start']}", "",
        "## Per-frame cost vs number of masks held (executor.run, batch 1, p50 µs, interleaved)", "",
        "| mask | present | all masks compiled | only this mask compiled | ratio |", "|---|---:|---:|---:|---:|",
    ]
    for mask, (all_us, one_us, n_all, n_one) in frame.items():
        lines.append(f"| {mask_label(mask, config.sensor_names)} | {bin(mask).count('1')} | {all_us:.0f} ({n_all} programs) | "
                     f"{one_us:.0f} ({n_one} program) | {all_us / one_us:.2f} |")
    lines += ["", "## Memory vs stages (RSS after each engine is loaded and warmed)", "",
              f"Least-squares line: {slope:.2f} MiB per stage engine, R² = {r2:.3f} over {len(points)} engines "
              f"({points[0][1]:.1f} → {points[-1][1]:.1f} MiB). One engine per stage means "
              f"{len(points)} engines for {len(all_masks(m))} masks; one engine per mask would mean {len(all_masks(m))}.", "",
              "| # | stage | RSS MiB |", "|---:|---|---:|"]
    lines += [f"| {i} | {s} | {r:.1f} |" for i, (s, r) in enumerate(points, 1)]
    lines += ["", "## Latency of this model by present sensors (profiler, batch 1, µs)", "",
              "| mask | p50 | p99 | Σ stages p50 | dispatch p50 | dispatch % |", "|---|---:|---:|---:|---:|---:|"]
    for v in profile["masks"].values():
        lines.append(f"| {v['label']} | {v['e2e']['p50']:.0f} | {v['e2e']['p99']:.0f} | {v['stage_sum']['p50']:.0f} | "
                     f"{v['dispatch']['p50']:.0f} | {100 * v['dispatch_fraction_p50']:.0f} |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
