"""Profile one engine bundle: cold start, per-mask latency, stages, dispatch, switches, memory.

Every latency is a batch-1 ``Runtime.infer`` call as a robot would make it. The variants that can
drift with machine load (the masks) are measured in interleaved rounds, so a burst of other work
lands on every mask alike. Stage times come from a second runtime over :class:`TimedEngine`
wrappers on the same engines; a frame's dispatch overhead is its time minus the sum of its stage
times, so the wrappers' own cost counts against dispatch, never in its favour.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.core.engine import Engine
from edgemoe.core.manifest import EngineManifest
from edgemoe.core.mask import all_masks, full_mask, is_present, mask_label, present_count
from edgemoe.core.stages import fused_stage
from edgemoe.profile.environment import Tegrastats, describe, gpu_memory
from edgemoe.profile.fused import measure_fused
from edgemoe.profile.timing import (TimedEngine, at_rate, back_to_back, peak_rss_bytes, percentiles, rss_bytes,
                                    timer_overhead_s)
from edgemoe.runtime.loader import load_engine_bundle
from edgemoe.runtime.runtime import Runtime

FORMAT = "edgemoe-profile/1"
CDF_POINTS = 200  # latency samples kept per mask for the CDF plot

Tick = Callable[[str], None]


@dataclass(frozen=True)
class ProfileSettings:
    """How much to measure. The defaults take about a minute for the 15 masks of a 4-sensor model."""

    masks: tuple[int, ...] | None = None  # None = every mask
    frames: int = 300  # measured steady-state frames per mask
    rounds: int = 3  # the frames are split into rounds interleaved over the masks
    warmup_frames: int = 20  # per mask, before measuring
    switch_frames: int = 100  # per alternating pattern
    throughput_batches: int = 20  # batches of max_batch per mask
    rate_hz: float = 20.0  # the sensor rate of the at-rate measurement (a daemon's fixed schedule)
    rate_frames: int = 40  # frames per at-rate variant (0 = skip it); 2 s each at 20 Hz
    prewarm_ms: float = 2.0  # the prewarmed variant's lead (the daemon's loop.prewarm_ms)
    data: Path | None = None  # a dataset directory: real test frames instead of random ones
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["data"] = None if self.data is None else str(self.data)
        return out


def work_units(num_masks: int, settings: ProfileSettings, patterns: int) -> int:
    """Progress-bar length: one unit per mask per phase, one per switch pattern."""
    return 3 + num_masks * (settings.rounds + 2) + patterns


def profile_engines(path: Path, settings: ProfileSettings = ProfileSettings(), tick: Tick = lambda what: None,
                    tegrastats: bool = True) -> dict[str, Any]:
    """The full profile of the engine bundle at ``path`` as a JSON-ready dict."""
    with Tegrastats() if tegrastats else _NoSampler() as sampler:
        report = _profile(Path(path), settings, tick)
    report["environment"]["tegrastats"] = sampler.to_dict()
    return report


def _profile(path: Path, settings: ProfileSettings, tick: Tick) -> dict[str, Any]:
    rss_start = rss_bytes()
    runtime, cold = _cold_start(path)
    tick("cold start")
    rss_loaded = rss_bytes()
    names = runtime.sensor_names
    masks = list(settings.masks or all_masks(len(names)))
    pool = FramePool(runtime, settings)
    compiled = _compiled(runtime)
    steady = _steady(runtime, masks, pool, settings, tick)
    stages = stage_breakdown(runtime, masks, pool, settings, tick)
    switch = _switches(runtime, masks, pool, settings, tick)
    throughput = _throughput(runtime, masks, pool, settings, tick)
    sensor_rate = _at_sensor_rate(runtime, masks, pool, settings, tick)
    fused = measure_fused(runtime, masks, pool.frame, settings.frames, settings.warmup_frames)
    tick("fused")
    after = _compiled(runtime)
    manifest = runtime.bundle.manifest
    report: dict[str, Any] = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "engines": str(path),
        "label": precision_label(manifest),
        "precision": {stage: e.precision for stage, e in manifest.engines.items()},
        "backend": manifest.backend,
        "target": manifest.target_name,
        "sensors": list(names),
        "stage_order": _stage_order(runtime),
        "settings": settings.to_dict(),
        "environment": describe(manifest.target.get("onnxruntime", {})),
        "cold_start": cold,
        "memory": {
            "rss_before_load_mib": rss_start / 2**20, "rss_after_load_mib": rss_loaded / 2**20,
            "rss_load_delta_mib": (rss_loaded - rss_start) / 2**20, "rss_end_mib": rss_bytes() / 2**20,
            "peak_rss_mib": peak_rss_bytes() / 2**20, "engines": len(runtime.bundle.engines),
            "gpu": gpu_memory(),
        },
        "masks": {},
        "switch": switch,
        "at_rate": sensor_rate,
        "compiled_after_start": {k: after[k] - compiled[k] for k in compiled},
        "fused": {str(m): v for m, v in fused.items()},
    }
    for mask in masks:
        report["masks"][str(mask)] = {
            "label": mask_label(mask, names), **steady[mask], **stages[mask], "throughput": throughput[mask],
        }
    report["summary"] = summarise(report)
    runtime.close()
    return report


def _stage_order(runtime: Runtime) -> list[str]:
    """Every stage, then the fused hot-mask engines."""
    return runtime.bundle.layout.stage_names() + [fused_stage(m) for m in sorted(runtime.bundle.fused)]


def precision_label(manifest: EngineManifest) -> str:
    found = sorted({e.precision for e in manifest.engines.values()})
    return found[0] if len(found) == 1 else "mixed(" + ",".join(found) + ")"


class _NoSampler:
    def __enter__(self) -> _NoSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": "disabled"}


def _cold_start(path: Path) -> tuple[Runtime, dict[str, float]]:
    """Load (files, checks, sessions), warm-up (every engine at every profile size), prepare
    (plans and programs for all masks) and the first frame, each timed."""
    t0 = time.perf_counter()
    bundle = load_engine_bundle(path, warm=False)
    t1 = time.perf_counter()
    for engine in (*bundle.engines.values(), *bundle.fused.values()):
        engine.warmup()
    t2 = time.perf_counter()
    runtime = Runtime(bundle)
    t3 = time.perf_counter()
    runtime.infer({name: np.zeros(s.shape, s.dtype) for name, s in
                   zip(runtime.sensor_names, runtime.config.sensors)})
    t4 = time.perf_counter()
    return runtime, {"load_s": t1 - t0, "warmup_s": t2 - t1, "prepare_s": t3 - t2,
                     "first_frame_us": (t4 - t3) * 1e6, "total_s": t4 - t0}


def _compiled(runtime: Runtime) -> dict[str, int]:
    """What exists on the hot path: compiled mask programs and engine shape bindings."""
    engines = (*runtime.bundle.engines.values(), *runtime.bundle.fused.values())
    bindings = sum(getattr(e, "bound_shapes", 0) for e in engines)
    return {"programs": len(runtime.executor.programs), "bindings": bindings}


class FramePool:
    """A few distinct frames per sensor (random, or real test frames), cycled through."""

    SIZE = 64

    def __init__(self, runtime: Runtime, settings: ProfileSettings) -> None:
        config = runtime.config
        if settings.data is not None:
            from edgemoe.data.dataset import load_split

            split = load_split(Path(settings.data) / "test.npz", config)
            self.frames = {n: np.ascontiguousarray(split.frames[n][: max(self.SIZE, runtime.bundle.max_batch)], np.float32)
                           for n in config.sensor_names}
        else:
            rng = np.random.default_rng(settings.seed)
            self.frames = {s.name: rng.standard_normal((self.SIZE, *s.shape)).astype(np.float32)
                           for s in config.sensors}
        self.size = len(next(iter(self.frames.values())))
        self.names = config.sensor_names
        self.max_batch = runtime.bundle.max_batch

    def frame(self, mask: int, i: int) -> dict[str, np.ndarray | None]:
        j = i % self.size
        return {n: (self.frames[n][j] if is_present(mask, b) else None) for b, n in enumerate(self.names)}

    def batch(self, mask: int, i: int) -> dict[str, np.ndarray]:
        lo = (i * self.max_batch) % max(1, self.size - self.max_batch + 1)
        return {n: self.frames[n][lo : lo + self.max_batch] for b, n in enumerate(self.names) if is_present(mask, b)}


def _steady(runtime: Runtime, masks: Sequence[int], pool: FramePool, settings: ProfileSettings,
            tick: Tick) -> dict[int, dict[str, Any]]:
    """End-to-end ``infer`` latency per mask, rounds interleaved over the masks."""
    samples: dict[int, list[float]] = {m: [] for m in masks}
    frames = {m: [pool.frame(m, i) for i in range(pool.size)] for m in masks}
    for mask in masks:
        for i in range(settings.warmup_frames):
            runtime.infer(frames[mask][i % pool.size])
    per_round = max(1, settings.frames // settings.rounds)
    clock = time.perf_counter
    for _ in range(settings.rounds):
        for mask in masks:
            got, todo = samples[mask], frames[mask]
            for i in range(per_round):
                frame = todo[i % pool.size]
                t0 = clock()
                runtime.infer(frame)
                got.append(clock() - t0)
            tick(f"steady {mask_label(mask, pool.names)}")
    out = {}
    for mask, s in samples.items():
        kept = np.sort(np.asarray(s))
        idx = np.linspace(0, kept.size - 1, min(CDF_POINTS, kept.size)).astype(int)
        out[mask] = {"e2e": percentiles(s), "cdf_us": (kept[idx] * 1e6).round(2).tolist()}
    return out


def stage_breakdown(runtime: Runtime, masks: Sequence[int], pool: FramePool, settings: ProfileSettings,
                    tick: Tick = lambda what: None) -> dict[int, dict[str, Any]]:
    """Per-stage times and dispatch overhead, through timed wrappers of the same engines. Each
    stage is clocked from its launch to its wait, so the sum is the mask's serial *limit* (the
    stages it must run, back to back, no dispatch) only at a thread budget of 1: with more, a
    ``wait`` also runs other queued stages and the wrappers' times overlap."""
    bundle = runtime.bundle
    timed = {name: TimedEngine(e) for name, e in bundle.engines.items()}
    timed_fused = {m: TimedEngine(e) for m, e in bundle.fused.items()}
    engines: dict[str, Engine] = dict(timed)
    fused: dict[int, Engine] = dict(timed_fused)
    probe = Runtime(dataclasses.replace(bundle, engines=engines, fused=fused))
    timed.update({fused_stage(m): e for m, e in timed_fused.items()})
    out = {}
    clock = time.perf_counter_ns
    overhead = timer_overhead_s()
    for mask in masks:
        per_stage: dict[str, list[float]] = {}
        frames, stage_sum, dispatch, fraction = [], [], [], []
        for i in range(settings.warmup_frames + settings.frames):
            frame = pool.frame(mask, i)
            for e in timed.values():
                e.spent.clear()
            t0 = clock()
            probe.infer(frame)
            total = clock() - t0
            if i < settings.warmup_frames:
                continue
            spent = 0
            for name, e in timed.items():
                if e.spent:
                    per_stage.setdefault(name, []).append(sum(e.spent) * 1e-9)
                    spent += sum(e.spent)
            frames.append(total * 1e-9)
            stage_sum.append(spent * 1e-9)
            dispatch.append((total - spent) * 1e-9)
            fraction.append((total - spent) / total)
        order = _stage_order(runtime)
        out[mask] = {
            "instrumented_e2e": percentiles(frames),
            "stages": {s: {**percentiles(per_stage[s]), "ran_fraction": len(per_stage[s]) / len(frames)}
                       for s in order if s in per_stage},
            "stage_sum": percentiles(stage_sum),
            "dispatch": percentiles(dispatch),
            "dispatch_fraction_p50": float(np.median(fraction)),
            # the timing wrappers' own Python, counted in dispatch above: one per stage run
            "timer_overhead_us": overhead * 1e6 * sum(len(x) for x in per_stage.values()) / max(1, len(frames)),
        }
        tick(f"stages {mask_label(mask, pool.names)}")
    return out


SWITCH_HOLD = 4  # frames each mask is held in a switch pattern: 1 switch frame + 3 steady references


def switch_patterns(masks: Sequence[int], num_sensors: int, rng: np.random.Generator,
                    frames: int) -> dict[str, list[int]]:
    """Mask sequences that change every ``SWITCH_HOLD`` frames: the full mask alternating with each
    mask that lacks one sensor, and a random walk over every profiled mask."""
    full = full_mask(num_sensors)
    blocks = max(2, frames // SWITCH_HOLD)
    patterns = {}
    if full in masks:
        for mask in masks:
            if mask != full and present_count(mask) == num_sensors - 1:
                patterns[f"full<->{mask}"] = [full if b % 2 == 0 else mask for b in range(blocks)]
    if len(masks) > 1:
        walk = [masks[0]]
        while len(walk) < blocks:
            walk.append(int(rng.choice([m for m in masks if m != walk[-1]])))
        patterns["random"] = walk
    return {name: [m for m in seq for _ in range(SWITCH_HOLD)] for name, seq in patterns.items()}


def _switches(runtime: Runtime, masks: Sequence[int], pool: FramePool, settings: ProfileSettings,
              tick: Tick) -> dict[str, Any]:
    """Latency of every first frame after a mask change against the frames that follow it with
    the same mask, measured in the same pattern (so machine load hits both alike)."""
    rng = np.random.default_rng(settings.seed + 1)
    patterns = switch_patterns(masks, len(pool.names), rng, settings.switch_frames)
    result: dict[str, Any] = {"hold": SWITCH_HOLD, "patterns": {}}
    all_first: dict[int, list[float]] = {}
    all_after: dict[int, list[float]] = {}
    clock = time.perf_counter
    for name, sequence in patterns.items():
        first: dict[int, list[float]] = {}
        after: dict[int, list[float]] = {}
        frames = [pool.frame(m, i) for i, m in enumerate(sequence)]
        for i, (mask, frame) in enumerate(zip(sequence, frames)):
            t0 = clock()
            runtime.infer(frame)
            took = clock() - t0
            if i:
                (first if sequence[i - 1] != mask else after).setdefault(mask, []).append(took)
        for m in first:
            all_first.setdefault(m, []).extend(first[m])
            all_after.setdefault(m, []).extend(after.get(m, []))
        result["patterns"][name] = _switch_stats(first, after)
        tick(f"switch {name}")
    result["all"] = _switch_stats(all_first, all_after)
    return result


def _switch_stats(first: dict[int, list[float]], after: dict[int, list[float]]) -> dict[str, Any]:
    """Switch frames' latency and their ratio to the steady p50 of the same mask in the pattern; the
    steady frames' own ratio to that p50 is the reference, the machine's jitter with no switch."""
    ratios = [t / float(np.median(after[m])) for m, ts in first.items() if after.get(m) for t in ts]
    jitter = [t / float(np.median(ts)) for m, ts in after.items() if m in first for t in ts]
    switch = [t for ts in first.values() for t in ts]
    steady = [t for ts in after.values() for t in ts]
    return {"switches": len(switch), "latency": percentiles(switch), "steady": percentiles(steady),
            "ratio_to_steady_p50": _ratio_stats(ratios), "steady_ratio_to_steady_p50": _ratio_stats(jitter)}


def _ratio_stats(ratios: Sequence[float]) -> dict[str, float]:
    if not ratios:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}
    p50, p90, p99 = np.percentile(ratios, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(max(ratios))}


def _at_sensor_rate(runtime: Runtime, masks: Sequence[int], pool: FramePool, settings: ProfileSettings,
                    tick: Tick) -> dict[str, Any] | None:
    """The mask with the most sensors, called back to back and once per tick of the sensor rate
    (plain, and prewarmed as the daemon can): the steady table is the tight-loop figure, while a
    robot's loop leaves the core idle between ticks and finds caches cold."""
    if settings.rate_frames <= 0:
        return None
    mask = max(masks, key=present_count)
    frame = pool.frame(mask, 0)

    def call() -> object:
        return runtime.infer(frame)

    back_to_back(call, settings.warmup_frames)
    variants = {"tight": back_to_back(call, 5 * settings.rate_frames),
                "at_rate": at_rate(call, settings.rate_frames, settings.rate_hz, "sleep"),
                "prewarmed": at_rate(call, settings.rate_frames, settings.rate_hz, "prewarm",
                                     settings.prewarm_ms * 1e-3)}
    tick("at sensor rate")
    return {"mask": mask, "label": mask_label(mask, pool.names), "hz": settings.rate_hz,
            "prewarm_ms": settings.prewarm_ms, **{k: percentiles(v) for k, v in variants.items()}}


def _throughput(runtime: Runtime, masks: Sequence[int], pool: FramePool, settings: ProfileSettings,
                tick: Tick) -> dict[int, dict[str, float]]:
    """Samples per second at the bundle's max batch (``infer_batch``) next to batch 1."""
    out = {}
    b = runtime.bundle.max_batch
    for mask in masks:
        batches = [pool.batch(mask, i) for i in range(settings.throughput_batches)]
        runtime.infer_batch(batches[0], mask)
        t0 = time.perf_counter()
        for part in batches:
            runtime.infer_batch(part, mask)
        took = time.perf_counter() - t0
        out[mask] = {"batch": b, "samples_per_s": b * len(batches) / took}
        tick(f"throughput {mask_label(mask, pool.names)}")
    return out


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a deployment is chosen by."""
    masks = report["masks"]
    p50 = {m: v["e2e"]["p50"] for m, v in masks.items()}
    worst_dispatch = max(masks.values(), key=lambda v: v["dispatch_fraction_p50"])
    return {
        "e2e_p50_us": {"min": min(p50.values()), "max": max(p50.values())},
        "e2e_p99_us_max": max(v["e2e"]["p99"] for v in masks.values()),
        "dispatch_fraction_p50_max": worst_dispatch["dispatch_fraction_p50"],
        "dispatch_fraction_p50_worst_mask": worst_dispatch["label"],
        "dispatch_fraction_p50_max_without_timer": max(
            (v["dispatch"]["p50"] - v["timer_overhead_us"]) / v["instrumented_e2e"]["p50"] for v in masks.values()),
        "switch_ratio_p50": report["switch"]["all"]["ratio_to_steady_p50"]["p50"],
        "switch_ratio_p99": report["switch"]["all"]["ratio_to_steady_p50"]["p99"],
        "steady_ratio_p99": report["switch"]["all"]["steady_ratio_to_steady_p50"]["p99"],
        "cold_start_s": report["cold_start"]["total_s"],
        "rss_load_delta_mib": report["memory"]["rss_load_delta_mib"],
        "compiled_after_start": report["compiled_after_start"],
    }
