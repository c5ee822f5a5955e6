#!/usr/bin/env python3
"""Batch-1 frame latency, side by side in one run: the per-mask engine runtime vs the two things a
user would otherwise ship — the PyTorch model in eager mode, and ONE monolithic ONNX Runtime session
of the whole model fed zeros for missing sensors — for every mask; plus the runtime's dispatch
overhead and mask-switch latency from the profiler.

The three variants are interleaved (round r: for every mask, a block of frames of each variant in
turn), so load from other processes lands on all of them; ratios are taken per round and the
median is reported with the spread across rounds as the noise figure.

    python benchmarks/bench_runtime.py --checkpoint runs/model.safetensors --engines runs/engines/cpu \
        --out benchmarks/results/runtime_vs_baselines.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from edgemoe.core.engine import TensorSpec  # noqa: E402
from edgemoe.core.mask import all_masks, full_mask, mask_label, masks_to_bits  # noqa: E402
from edgemoe.engines.onnxruntime.engine import OrtEngine  # noqa: E402
from edgemoe.engines.target import OrtOptions  # noqa: E402
from edgemoe.export.fused import export_fused  # noqa: E402
from edgemoe.export.monolithic import PRESENT, export_monolithic  # noqa: E402
from edgemoe.profile.environment import cpu_model  # noqa: E402
from edgemoe.profile.measure import ProfileSettings, profile_engines  # noqa: E402
from edgemoe.profile.timing import rss_bytes  # noqa: E402
from edgemoe.runtime.runtime import Runtime  # noqa: E402
from edgemoe.train.checkpoint import load_checkpoint  # noqa: E402

VARIANTS = ("runtime", "eager", "monolithic", "fused")


class Monolithic:
    """The whole model as one ORT session, driven the runtime's way (io-binding, buffers allocated
    once, same session options), so the comparison isolates what is computed, not how it is called."""

    def __init__(self, model: torch.nn.Module, options: OrtOptions, graph: bytes | None = None) -> None:
        config = model.config
        graph = graph or export_monolithic(model).SerializeToString()
        inputs = [TensorSpec(s.name, ("batch", *s.shape)) for s in config.sensors]
        inputs.append(TensorSpec(PRESENT, ("batch", config.num_sensors)))
        outputs = [TensorSpec("probs", ("batch", config.num_classes))]
        self.engine = OrtEngine("monolithic", graph, inputs, outputs, {"batch": 1}, options)
        self.engine.warmup()
        self.config = config

    def feed(self, frame: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        """Missing sensors become zero frames; ``present`` carries the mask."""
        mask = sum(1 << i for i, n in enumerate(self.config.sensor_names) if frame[n] is not None)
        feeds = {s.name: (frame[s.name] if frame[s.name] is not None else np.zeros(s.shape, np.float32))[None]
                 for s in self.config.sensors}
        feeds[PRESENT] = masks_to_bits(np.array([mask]), self.config.num_sensors).astype(np.float32)
        return feeds

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        for name, value in feeds.items():
            np.copyto(self.engine.input(name, value.shape), value)
        self.engine.launch()
        return self.engine.wait()["probs"]


class Fused(Monolithic):
    """One hot mask's whole forward as one engine (only its sensors as inputs): what a fused
    hot-mask engine would cost and save. ``rss_mib``/``file_bytes`` are the memory it pays."""

    def __init__(self, model: torch.nn.Module, mask: int, options: OrtOptions, graph: bytes | None = None) -> None:
        config = model.config
        graph = graph or export_fused(model, mask).SerializeToString()
        self.file_bytes = len(graph)
        inputs = [TensorSpec(s.name, ("batch", *s.shape)) for i, s in enumerate(config.sensors) if mask >> i & 1]
        outputs = [TensorSpec("probs", ("batch", config.num_classes))]
        before = rss_bytes()
        self.engine = OrtEngine(f"fused[{mask}]", graph, inputs, outputs, {"batch": 1}, options)
        self.engine.warmup()
        self.rss_mib = (rss_bytes() - before) / 2**20
        self.config = config

    def feed(self, frame: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        return {n: f[None] for n, f in frame.items() if f is not None}


def eager_call(model: torch.nn.Module) -> tuple[callable, callable]:
    names = model.config.sensor_names

    def feed(frame: dict[str, np.ndarray | None]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        present = torch.tensor([[frame[n] is not None for n in names]])
        tensors = {s.name: torch.from_numpy(frame[s.name][None] if frame[s.name] is not None
                                            else np.zeros((1, *s.shape), np.float32)) for s in model.config.sensors}
        return tensors, present

    def run(fed: tuple[dict[str, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(*fed).logits, -1)

    return feed, run


def frames_for(runtime: Runtime, mask: int, n: int, rng: np.random.Generator) -> list[dict[str, np.ndarray | None]]:
    return [{s.name: (rng.standard_normal(s.shape).astype(np.float32) if mask >> i & 1 else None)
             for i, s in enumerate(runtime.config.sensors)} for _ in range(n)]


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)  # the runtime's engines use one intra-op thread; same budget for eager
    ckpt = load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    runtime = Runtime.load(args.engines)
    options = OrtOptions.model_validate(runtime.bundle.manifest.target["onnxruntime"])
    mono = Monolithic(model, options)
    feed_eager, run_eager = eager_call(model)
    masks = all_masks(runtime.config.num_sensors)
    fused_masks = masks if args.fused == "all" else [int(x) for x in args.fused.split(",") if x]
    fused = {m: Fused(model, m, options) for m in fused_masks}
    rng = np.random.default_rng(0)
    prepared = {}
    for mask in masks:
        frames = frames_for(runtime, mask, args.frames, rng)
        prepared[mask] = {
            "runtime": (frames, runtime.infer),
            "eager": ([feed_eager(f) for f in frames], run_eager),
            "monolithic": ([mono.feed(f) for f in frames], mono),
        }
        if mask in fused:
            prepared[mask]["fused"] = ([fused[mask].feed(f) for f in frames], fused[mask])
            d = np.array(fused[mask](prepared[mask]["fused"][0][0]))[0]
            assert np.abs(d - runtime.infer(frames[0]).probs).max() < 1e-4, f"mask {mask}: fused output differs"
        # the three agree on the answer (a benchmark of wrong outputs proves nothing)
        a = runtime.infer(frames[0]).probs
        b = run_eager(prepared[mask]["eager"][0][0]).numpy()[0]
        c = np.array(mono(prepared[mask]["monolithic"][0][0]))[0]
        assert np.abs(a - b).max() < 1e-4 and np.abs(a - c).max() < 1e-4, f"mask {mask}: outputs differ"
    load_before = os.getloadavg()
    samples = {(m, v): [] for m in masks for v in VARIANTS}
    per_round = {(m, v): [] for m in masks for v in VARIANTS}
    for _ in range(args.rounds):
        for mask in masks:
            for variant in prepared[mask]:
                got = timed_block(*prepared[mask][variant], args.warmup)
                samples[(mask, variant)] += got
                per_round[(mask, variant)].append(float(np.median(got)))
    load_after = os.getloadavg()
    runtime.close()
    profile = profile_engines(args.engines, ProfileSettings(frames=args.profile_frames, rounds=2,
                                                            switch_frames=args.switch_frames, throughput_batches=2))
    fused_cost = {m: (f.rss_mib, f.file_bytes) for m, f in fused.items()}
    return {"masks": masks, "names": runtime.sensor_names, "samples": samples, "per_round": per_round,
            "fused": fused_cost,
            "profile": profile, "load": (load_before, load_after), "rounds": args.rounds, "frames": args.frames}


def timed_block(inputs: list, call: callable, warmup: int) -> list[float]:
    """Seconds per call of ``call`` on each of ``inputs``, after ``warmup`` untimed calls."""
    for x in inputs[:warmup]:
        call(x)
    clock, took = time.perf_counter, []
    for x in inputs:
        t0 = clock()
        call(x)
        took.append(clock() - t0)
    return took


def ratio_stats(per_round: dict, mask: int, a: str, b: str) -> tuple[float, float, float]:
    r = np.array(per_round[(mask, a)]) / np.array(per_round[(mask, b)])
    return float(np.median(r)), float(r.min()), float(r.max())


def report(res: dict, args: argparse.Namespace) -> str:
    masks, names, s, pr, prof = res["masks"], res["names"], res["samples"], res["per_round"], res["profile"]
    m = len(names)
    p = {(k, v): float(np.median(x)) * 1e6 for (k, v), x in s.items() if x}
    p99 = {(k, v): float(np.percentile(x, 99)) * 1e6 for (k, v), x in s.items() if x}
    lines = [
        "# Runtime vs PyTorch eager vs one monolithic ONNX Runtime session (batch 1)", "",
        f"Command: `python benchmarks/bench_runtime.py {' '.join(sys.argv[1:])}`", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, shared with other jobs: load average "
        f"{res['load'][0][0]:.1f} before, {res['load'][1][0]:.1f} after (1-min). onnxruntime one intra-op thread per "
        "session (engine profile `cpu`); torch.set_num_threads(1). Model: "
        f"{args.checkpoint} ({m} sensors).", "",
        f"Interleaved: {res['rounds']} rounds × every mask × (runtime, eager, monolithic, fused), {res['frames']} frames per "
        "block. Latency = p50 over all rounds in µs; ratio = median over rounds of the per-round p50 ratio, "
        "[min–max over rounds] is the noise band. The three variants' outputs were checked equal (1e-4) on "
        "every mask before timing.", "",
        "Monolithic = the whole MoE forward exported as one graph (`edgemoe/export/monolithic.py`), all "
        "sensors as inputs plus `present`, zeros for missing sensors, run through the same io-binding engine "
        "class as the runtime's stages.", "",
        "| mask | missing | runtime p50 | eager p50 | monolithic p50 | runtime p99 | eager p99 | monolithic p99 | "
        "runtime/eager | runtime/monolithic | dispatch % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    verdict_eager = []
    for k in sorted(masks, key=lambda k: (-bin(k).count("1"), k)):
        re_, lo_e, hi_e = ratio_stats(pr, k, "runtime", "eager")
        rm, lo_m, hi_m = ratio_stats(pr, k, "runtime", "monolithic")
        verdict_eager.append(re_)
        disp = 100 * prof["masks"][str(k)]["dispatch_fraction_p50"]
        lines.append(
            f"| {mask_label(k, names)} | {m - bin(k).count('1')} | {p[(k, 'runtime')]:.0f} | {p[(k, 'eager')]:.0f} | "
            f"{p[(k, 'monolithic')]:.0f} | {p99[(k, 'runtime')]:.0f} | {p99[(k, 'eager')]:.0f} | "
            f"{p99[(k, 'monolithic')]:.0f} | {re_:.2f} [{lo_e:.2f}–{hi_e:.2f}] | {rm:.2f} [{lo_m:.2f}–{hi_m:.2f}] | "
            f"{disp:.0f} |")
    lines += ["", "## As sensors go missing (mean p50 over the masks with that many sensors missing, µs)", "",
              "| sensors missing | masks | runtime | eager | monolithic | runtime / runtime at full mask | "
              "monolithic / monolithic at full mask |", "|---:|---:|---:|---:|---:|---:|---:|"]
    full = full_mask(m)
    runtime_drop, mono_drop = {}, {}
    mono_ratios = [ratio_stats(pr, k, "runtime", "monolithic")[0] for k in masks]
    for gone in range(0, min(3, m)):
        group = [k for k in masks if m - bin(k).count("1") == gone]
        mean = {v: float(np.mean([p[(k, v)] for k in group])) for v in ("runtime", "eager", "monolithic")}
        runtime_drop[gone] = mean["runtime"] / p[(full, "runtime")]
        mono_drop[gone] = mean["monolithic"] / p[(full, "monolithic")]
        lines.append(f"| {gone} | {len(group)} | {mean['runtime']:.0f} | {mean['eager']:.0f} | {mean['monolithic']:.0f} | "
                     f"{mean['runtime'] / p[(full, 'runtime')]:.2f} | {mean['monolithic'] / p[(full, 'monolithic')]:.2f} |")
    if res["fused"]:
        lines += ["", "## Optional: a fused engine per hot mask (one engine call per frame for that mask)", "",
                  "Each fused engine is that mask's whole forward as one graph (`export_fused`: only its encoders, "
                  "gate, top-k, every expert densely, head), loaded beside the stage engines. Gain = runtime p50 − fused "
                  "p50; memory = RSS growth when its session was created and warmed (in this process, where PyTorch already "
                  "holds a large heap, growth below ~0.1 MiB is reused heap and reads as 0), and its ONNX size, which "
                  "is the weight copy each fused engine adds.", "",
                  "| mask | runtime p50 | fused p50 | fused/runtime | gained µs | RSS paid MiB | file KiB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for k in sorted(res["fused"], key=lambda k: (-bin(k).count("1"), k)):
            rf, lo_f, hi_f = ratio_stats(pr, k, "fused", "runtime")
            rss, size = res["fused"][k]
            lines.append(f"| {mask_label(k, names)} | {p[(k, 'runtime')]:.0f} | {p[(k, 'fused')]:.0f} | "
                         f"{rf:.2f} [{lo_f:.2f}–{hi_f:.2f}] | {p[(k, 'runtime')] - p[(k, 'fused')]:.0f} | {rss:.2f} | "
                         f"{size / 1024:.0f} |")
    sm = prof["summary"]
    lines += [
        "", "## Targets", "",
        f"- runtime ≤ 0.5× eager at batch 1, every mask: worst ratio {max(verdict_eager):.2f}, best "
        f"{min(verdict_eager):.2f} → {'met' if max(verdict_eager) <= 0.5 else 'NOT met'} on every mask"
        if max(verdict_eager) <= 0.5 else
        f"- runtime ≤ 0.5× eager at batch 1, every mask: worst ratio {max(verdict_eager):.2f}, best "
        f"{min(verdict_eager):.2f} → NOT met on {sum(r > 0.5 for r in verdict_eager)} of {len(masks)} masks",
        f"- runtime vs the monolithic session: {min(mono_ratios):.2f}–{max(mono_ratios):.2f}× its latency "
        f"({'faster' if max(mono_ratios) < 1 else 'slower' if min(mono_ratios) > 1 else 'mixed'} on every mask); "
        f"the runtime falls to {runtime_drop[1]:.2f}× / {runtime_drop[2]:.2f}× of its full-mask latency with 1 / 2 sensors "
        f"missing, the monolithic stays at {mono_drop[1]:.2f}× / {mono_drop[2]:.2f}×",
        f"- dispatch overhead (frame − Σ stage times, profiler) ≤ 25% of frame time: worst mask "
        f"{100 * sm['dispatch_fraction_p50_max']:.0f}% ({sm['dispatch_fraction_p50_worst_mask']}) → "
        f"{'met' if sm['dispatch_fraction_p50_max'] <= 0.25 else 'NOT met'}",
        f"- first frame after a mask switch ≤ 1.5× steady p50: p50 ratio {sm['switch_ratio_p50']:.2f}× "
        f"(p99 {sm['switch_ratio_p99']:.2f}×; for comparison the steady frames of the same patterns have p99/p50 "
        f"{prof['switch']['all']['steady']['p99'] / prof['switch']['all']['steady']['p50']:.2f}×) → "
        f"{'met' if sm['switch_ratio_p50'] <= 1.5 else 'NOT met'} at the median",
        f"- nothing loaded or compiled after start: programs/bindings created during the profile "
        f"{sm['compiled_after_start']}; cold start {sm['cold_start_s']:.2f} s",
        "", "Dispatch per mask (µs, p50): " + ", ".join(
            f"{v['label']} {v['dispatch']['p50']:.0f}/{v['instrumented_e2e']['p50']:.0f}" for v in prof["masks"].values()),
        "",
    ]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    masks = sorted(res["masks"], key=lambda k: (-bin(k).count("1"), k))
    x = np.arange(len(masks))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for i, v in enumerate(VARIANTS):
        ax.bar(x + (i - 1.5) * 0.2, [np.median(res["samples"][(k, v)]) * 1e6 if res["samples"][(k, v)] else 0
                                     for k in masks], 0.2, label=v)
    ax.set_xticks(x, [mask_label(k, res["names"]) for k in masks], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("p50 latency, batch 1 (µs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--engines", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/runtime_vs_baselines.md"))
    parser.add_argument("--frames", type=int, default=100, help="frames per block")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile-frames", type=int, default=200)
    parser.add_argument("--switch-frames", type=int, default=200)
    parser.add_argument("--fused", default="all", help="masks that get a fused engine: 'all' or e.g. '15,8'")
    parser.add_argument("--quick", action="store_true", help="a few frames only: proves the script works")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.rounds, args.warmup, args.profile_frames, args.switch_frames = 5, 1, 1, 5, 8
        args.fused = "8"
    res = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(res, args))
    plot(res, args.out.with_suffix(".png"))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
