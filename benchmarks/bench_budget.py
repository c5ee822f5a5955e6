#!/usr/bin/env python3
"""The thread-budget race at batch 1: the staged runtime against one monolithic ONNX Runtime session
given the SAME number of threads, fused per-mask engines and PyTorch eager, on every mask of every
model given, at every budget; with each mask's limit (the stages it must run, each clocked alone,
summed: what a dispatch-free serial runtime would take).

Budget N means: the staged runtime's bundle uses at most N threads at once (``onnxruntime.threads``
lanes times the most intra-op threads any stage session has: N lanes of single-thread sessions, or
one lane whose heavy stages get N intra-op threads through ``stage_intra_op_threads``); the
monolithic and fused sessions get ``intra_op_threads = N`` and ``inter_op_threads = N`` (ORT_PARALLEL above 1); and since ORT's parallel executor can lose to its
sequential one, "monolithic" is also run sequentially at intra-op N and each round keeps the faster
of the two (the best a single session does with N threads). Eager runs at ``torch.set_num_threads(N)``.

A bundle built with fused engines also runs as the deployed runtime does: each mask through its fused
engine ("runtime fused") and, per mask, whichever of that and the staged plan has the lower p50 over
all rounds ("deployed": the choice ``edgemoe profile`` writes into ``fused_choice.json`` for
``edgemoe build --fuse``).

``--precision int8-dynamic`` races engine bundles built at that precision (``edgemoe build
--precision int8-dynamic`` of a calibrated bundle: int8 weights in the large matrix products, the
CPU's fast precision): the monolithic and bare fused sessions then get the same quantizer with the
same weight threshold, so both sides of the race read the same bytes; eager stays PyTorch's fp32
forward, the framework a model is trained in, and its output is checked against the runtime's within
the quantization's tolerance instead of 1e-4.

Everything is interleaved (round r: for each model, mask and budget, a block of frames of each
variant in turn, in a seeded random order drawn afresh for every block) so the machine's other
load lands on all of them; ratios are per round, the median is reported with the [min-max over
rounds] spread. Outputs are checked equal first.

    python benchmarks/bench_budget.py --threads 1 2 \
        --case robot4 runs/robot4.safetensors 'runs/eng_robot4_t{threads}' \
        --case robot4_large runs/robot4_large.safetensors 'runs/eng_robot4_large_t{threads}'
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.bench_runtime import Fused, Monolithic, eager_call, frames_for, timed_block  # noqa: E402
from edgemoe.calibrate.dynamic import DYNAMIC, quantize_dynamic_stage  # noqa: E402
from edgemoe.core.mask import all_masks, mask_label  # noqa: E402
from edgemoe.engines.target import OrtOptions  # noqa: E402
from edgemoe.export.fused import export_fused  # noqa: E402
from edgemoe.export.monolithic import export_monolithic  # noqa: E402
from edgemoe.profile.environment import cpu_model  # noqa: E402
from edgemoe.profile.measure import FramePool, ProfileSettings, stage_breakdown  # noqa: E402
from edgemoe.runtime.loader import load_engine_bundle  # noqa: E402
from edgemoe.runtime.runtime import Runtime  # noqa: E402
from edgemoe.train.checkpoint import load_checkpoint  # noqa: E402

VARIANTS = ("staged", "runtime_fused", "monolithic", "monolithic_seq", "fused", "eager")
PRECISIONS = ("fp32", DYNAMIC)  # the CPU's: int8 Q/DQ and fp16 run slower than fp32 on ONNX Runtime's CPU provider
# largest difference in probabilities allowed between the runtime and a variant before timing: same
# arithmetic (1e-4), or PyTorch's fp32 eager against int8-dynamic engines (the quantization's error)
TOLERANCE = {"same": 1e-4, DYNAMIC: 0.05}


class Case:
    """One model at every budget: its runtimes, single sessions, eager call and frames per mask."""

    def __init__(self, name: str, checkpoint: Path, engines: str, budgets: list[int], frames: int,
                 precision: str = "fp32") -> None:
        self.name = name
        self.precision = precision
        self.model = load_checkpoint(checkpoint).model.eval()
        self.masks = all_masks(self.model.config.num_sensors)
        self.runtimes, self.fused_runtimes, self.calls = {}, {}, {}
        self.setup: dict[int, str] = {}
        feed_eager, run_eager = eager_call(self.model)
        self.names = self.model.config.sensor_names
        thresholds: dict[str, int | None] = {}
        for n in budgets:
            bundle = load_engine_bundle(Path(engines.format(threads=n)))
            thresholds.update(bundle_precision(bundle, precision))
            options = OrtOptions.model_validate(bundle.manifest.target["onnxruntime"])
            used = threads_used(options, bundle.manifest.layout.stage_names())
            if used > n:
                raise SystemExit(f"{bundle.path}: uses up to {used} threads at once, over the budget {n}")
            self.runtimes[n] = Runtime(dataclasses.replace(bundle, fused={}))
            self.setup[n] = describe_threads(options, len(bundle.fused))
            if bundle.fused:
                self.fused_runtimes[n] = Runtime(bundle)
        if len(set(thresholds.values())) > 1:
            raise SystemExit(f"engines quantized with different int8-dynamic weight thresholds (KiB): {thresholds}; "
                             "calibrate every budget's bundle with one recipe")
        min_weight_kib = next(iter(thresholds.values()))
        # the bare fused session of a mask has the expert form of the bundle's fused engine (dense if none)
        forms = {m: e.experts for rt in self.fused_runtimes.values() for m, e in rt.bundle.manifest.fused.items()}
        mono_graph = at_precision(export_monolithic(self.model).SerializeToString(), precision, min_weight_kib)
        fused_graphs = {m: at_precision(export_fused(self.model, m, forms.get(m, "dense")).SerializeToString(),
                                        precision, min_weight_kib) for m in self.masks}
        self.forms = {m: forms.get(m, "dense") for m in self.masks}
        rng = np.random.default_rng(0)
        frames = {m: frames_for(self.runtimes[budgets[0]], m, frames, rng) for m in self.masks}
        for n, runtime in self.runtimes.items():
            single = OrtOptions(intra_op_threads=n, inter_op_threads=n)
            mono = Monolithic(self.model, single, mono_graph)
            seq = Monolithic(self.model, OrtOptions(intra_op_threads=n), mono_graph) if n > 1 else None
            for m in self.masks:
                fused = Fused(self.model, m, OrtOptions(intra_op_threads=n), fused_graphs[m])
                todo = frames[m]
                by_index = [{i: f[None] for i, f in enumerate(frame.values()) if f is not None} for frame in todo]
                calls = {
                    "staged": (by_index, lambda x, r=runtime, m=m: r.run(m, x)),
                    "monolithic": ([mono.feed(f) for f in todo], mono),
                    "fused": ([fused.feed(f) for f in todo], fused),
                    "eager": ([feed_eager(f) for f in todo], with_torch_threads(run_eager, n)),
                }
                if seq is not None:
                    calls["monolithic_seq"] = ([seq.feed(f) for f in todo], seq)
                fused_runtime = self.fused_runtimes.get(n)
                if fused_runtime is not None and m in fused_runtime.fused_masks:
                    calls["runtime_fused"] = (by_index, lambda x, r=fused_runtime, m=m: r.run(m, x))
                self.calls[(m, n)] = calls
        self.check(budgets)

    def check(self, budgets: list[int]) -> None:
        """Every variant answers alike (and the budgets bit-identically) before anything is timed:
        within 1e-4, or the quantization's tolerance where eager is fp32 and the engines are not."""
        for m in self.masks:
            ref = None
            for n in budgets:
                calls = self.calls[(m, n)]
                staged = calls["staged"][1](calls["staged"][0][0]).probs
                if ref is None:
                    ref = staged
                assert np.array_equal(staged, ref), f"{self.name} mask {m}: budget {n} changes the output"
                for v, (inputs, call) in calls.items():
                    got = call(inputs[0])
                    out = got.probs if v in ("staged", "runtime_fused") else np.asarray(got)[0]
                    tolerance = TOLERANCE["same" if v != "eager" or self.precision == "fp32" else self.precision]
                    assert np.abs(out - ref).max() < tolerance, f"{self.name} mask {m}: {v} at {n} threads differs"


def bundle_precision(bundle: Any, precision: str) -> dict[str, int | None]:
    """Refuse an engine bundle not built at ``precision``; return each engine's int8-dynamic weight
    threshold (KiB, from its record; None at fp32) by ``bundle/engine``. They must agree: the
    monolithic and fused sessions are quantized with it."""
    built = {e.precision for e in [*bundle.manifest.engines.values(), *bundle.manifest.fused.values()]}
    if built != {precision}:
        raise SystemExit(f"{bundle.path}: engines built at {sorted(built)}, not {precision} only "
                         f"('edgemoe build --precision {precision}')")
    engines = [*bundle.manifest.engines.items(), *bundle.manifest.fused.items()]
    return {f"{bundle.path}/{name}": None if precision == "fp32" else e.calibration["min_weight_kib"]
            for name, e in engines}


def at_precision(graph: bytes, precision: str, min_weight_kib: int | None) -> bytes:
    """An fp32 ONNX graph at the race's precision, by the quantizer the engines' variants came from."""
    if precision == "fp32":
        return graph
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp, "fp32.onnx"), Path(tmp, f"{precision}.onnx")
        source.write_bytes(graph)
        quantize_dynamic_stage("baseline", source, out, min_weight_kib)
        return out.read_bytes()


def threads_used(options: OrtOptions, stages: list[str]) -> int:
    """The most threads a bundle's runtime runs at once: lanes times its largest stage session
    (intra-op 0 is ONNX Runtime's default, one thread per core)."""
    intra = [options.for_stage(stage).intra_op_threads or os.cpu_count() or 1 for stage in stages]
    return options.threads * max(intra)


def describe_threads(options: OrtOptions, fused: int) -> str:
    text = f"{options.threads} lane(s), intra-op {options.intra_op_threads}"
    if options.stage_intra_op_threads:
        text += " except " + ", ".join(f"`{p}` at {t}" for p, t in options.stage_intra_op_threads.items())
    return text + f"; {fused} fused engine(s)"


def with_torch_threads(run: Callable[[Any], Any], n: int) -> Callable[[Any], Any]:
    """``run`` with PyTorch set to ``n`` intra-op threads first (eager's share of the budget)."""

    def call(x: Any) -> Any:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return run(x)
    return call


def measure(cases: list[Case], budgets: list[int], args: argparse.Namespace) -> dict:
    per_round: dict[tuple, list[float]] = {}
    samples: dict[tuple, list[float]] = {}
    limit: dict[tuple, list[float]] = {}
    dispatch: dict[tuple, list[float]] = {}
    load = [os.getloadavg()]
    settings = ProfileSettings(frames=args.frames, warmup_frames=args.warmup)
    order = np.random.default_rng(0)
    for _ in range(args.rounds):
        for case in cases:
            base = case.runtimes[budgets[0]]
            torch.set_num_threads(1)
            pool = FramePool(base, settings)
            for m, got in stage_breakdown(base, case.masks, pool, settings).items():
                limit.setdefault((case.name, m), []).append(got["stage_sum"]["p50"])
                dispatch.setdefault((case.name, m), []).append(got["dispatch_fraction_p50"])
            # a fused engine is its mask's one stage: clocked the same way, inside frames of the runtime
            # that deploys it, at each budget (one stage's launch..wait is its time at any budget)
            for n, fused_runtime in case.fused_runtimes.items():
                masks = sorted(fused_runtime.fused_masks)
                for m, got in stage_breakdown(fused_runtime, masks, FramePool(fused_runtime, settings), settings).items():
                    limit.setdefault((case.name, m, n), []).append(got["stage_sum"]["p50"])
                    dispatch.setdefault((case.name, m, n), []).append(got["dispatch_fraction_p50"])
            for m in case.masks:
                for n in budgets:
                    calls = case.calls[(m, n)]
                    # a fresh order per block: in a fixed order the variant after the monolithic
                    # sequential session ran ~7% slower than first in line (robot4_large, full mask,
                    # two threads), whichever variant it was
                    for v in order.permutation(list(calls)):
                        inputs, call = calls[v]
                        took = timed_block(inputs, call, args.warmup)
                        samples.setdefault((case.name, m, n, v), []).extend(took)
                        per_round.setdefault((case.name, m, n, v), []).append(float(np.median(took)) * 1e6)
        load.append(os.getloadavg())
        print(f"round {len(load) - 1}/{args.rounds} done, load {load[-1][0]:.1f}", file=sys.stderr, flush=True)
    return {"per_round": per_round, "samples": samples, "limit": limit, "dispatch": dispatch, "load": load}


def ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    r = np.asarray(a) / np.asarray(b)
    return float(np.median(r)), float(r.min()), float(r.max())


def summarise(res: dict, cases: list[Case], budgets: list[int]) -> dict:
    """Per (model, mask, budget): p50s, and per-round ratios of staged to each competitor."""
    pr, out = res["per_round"], {}
    for case in cases:
        for m in case.masks:
            lim = res["limit"][(case.name, m)]
            for n in budgets:
                key = (case.name, m, n)
                mono = pr[(*key, "monolithic")]
                if (*key, "monolithic_seq") in pr:
                    mono = list(np.minimum(mono, pr[(*key, "monolithic_seq")]))
                staged = pr[(*key, "staged")]
                # one path per mask, as the profile's choice fixes it: the one with the lower p50 over all
                # rounds (choosing the faster per round would flatter the runtime where the two are close)
                path = "staged"
                if (*key, "runtime_fused") in pr and np.median(pr[(*key, "runtime_fused")]) < np.median(staged):
                    path = "runtime_fused"
                deployed = pr[(*key, path)]
                # the deployed path's limit and dispatch: its stages', or its fused engine's at this budget
                own = key if path == "runtime_fused" else (case.name, m)
                own_limit = res["limit"][own]
                dispatch = float(np.median(res["dispatch"][own]))
                out[key] = {
                    "p50": {v: float(np.median(res["samples"][(*key, v)])) * 1e6
                            for v in VARIANTS if (*key, v) in res["samples"]},
                    "limit": float(np.median(lim)),
                    "dispatch": float(np.median(res["dispatch"][(case.name, m)])),
                    "mono": ratio(staged, mono), "lim": ratio(staged, lim),
                    "deployed": float(np.median(res["samples"][(*key, path)])) * 1e6, "path": path,
                    "deployed_mono": ratio(deployed, mono), "deployed_eager": ratio(deployed, pr[(*key, "eager")]),
                    "deployed_lim": ratio(deployed, own_limit), "deployed_dispatch": dispatch,
                    "eager": ratio(staged, pr[(*key, "eager")]), "fused": ratio(staged, pr[(*key, "fused")]),
                }
    return out


def report(res: dict, table: dict, cases: list[Case], budgets: list[int], args: argparse.Namespace) -> str:
    load = res["load"]
    lines = [
        ("# Thread-budget race: the runtime (staged, and as deployed) vs one monolithic session at the same "
         f"budget (batch 1, {args.precision})"), "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/bench_budget.py {' '.join(sys.argv[1:])}`", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, shared with other jobs: 1-min load average "
        f"{load[0][0]:.1f} at start, {max(x[0] for x in load):.1f} at worst, {load[-1][0]:.1f} at the end "
        "(so absolute µs are inflated and noisy; read the ratios).", "",
        "Budget N: staged = the engine bundle's staged plan through the trusted door `Runtime.run(mask, "
        "frames_by_index)`, the bundle using at most N threads at once (each section names its lanes and "
        "intra-op threads); runtime fused = the same door on the same bundle with its fused engines, one per "
        "mask; deployed = per mask the one of the two with the lower p50 over all rounds, marked F where "
        "that is the fused engine (what `edgemoe profile`'s fused choice builds when its memory budget admits every mask a fused engine speeds up); monolithic = the whole "
        "model as one ORT session fed zeros for missing sensors, intra-op N and inter-op N (ORT_PARALLEL) — "
        "and at N > 1 also sequential at intra-op N, each round keeping the faster; fused = the mask's whole "
        "forward as one session, sequential at intra-op N; eager = PyTorch at `torch.set_num_threads(N)`. "
        "Limit = the mask's stages each clocked alone (launch..wait) and summed, p50 over frames, measured "
        f"at budget {budgets[0]} in every round. Dispatch = (frame − Σ stages) / frame at budget {budgets[0]} "
        "through the checked door (`infer`), profiler's own timing wrappers included. The deployed runtime's "
        "own limit and dispatch follow its path: for a staged mask the staged ones; for a fused mask (F) the "
        "limit is its one stage, the fused engine clocked the same way inside frames of the runtime that "
        "deploys it, at the race's budget (one stage's launch..wait is its time at any budget), and dispatch "
        "is (frame − that) / frame. A fused engine's experts "
        "are dense or routed as `edgemoe export --fused-experts auto` chose (the fused column runs the same "
        "form; the section names the routed masks).", "",
        f"Interleaved: {args.rounds} rounds × model × mask × budget × variant, {args.frames} frames per block, "
        "the variants of a block in a seeded random order drawn afresh for each. "
        "p50 over all rounds in µs; ratios = median over rounds of per-round p50 ratios, [min–max] the spread. "
        "Every variant's output was checked equal (1e-4) to the staged one on every mask, and the staged "
        "outputs at every budget bit-identical, before timing.", "",
    ]
    if args.precision != "fp32":
        lines += [f"Precision {args.precision}: the engine bundles were built with `edgemoe build --precision "
                  f"{args.precision}`; the monolithic and fused sessions are the same graphs quantized by the same "
                  "function with the same weight threshold (`edgemoe.calibrate.dynamic`); eager is PyTorch's fp32 "
                  f"forward, checked against the runtime within {TOLERANCE[args.precision]} in probability "
                  "(the quantization's error) instead of 1e-4.", ""]
    for case in cases:
        for n in budgets:
            lines += [f"## {case.name}, {n} thread{'s' if n > 1 else ''}", "",
                      f"Runtime: {case.setup[n]}; {expert_forms(case)}.", "",
                      "| mask | staged | runtime fused | deployed | monolithic | mono seq | fused | eager | limit | "
                      "staged/mono | deployed/mono | staged/limit | deployed/own limit | staged/eager | staged/fused | "
                      "dispatch % | deployed dispatch % |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for m in sorted(case.masks, key=lambda k: (-bin(k).count("1"), k)):
                row = table[(case.name, m, n)]
                p = row["p50"]
                fmt = lambda r: f"{r[0]:.2f} [{r[1]:.2f}–{r[2]:.2f}]"  # noqa: E731
                us = [f"{p[v]:.0f}" if v in p else "–" for v in VARIANTS]
                deployed = f"{row['deployed']:.0f}{' F' if row['path'] == 'runtime_fused' else ''}"
                lines.append(f"| {mask_label(m, case.names)} | {' | '.join([*us[:2], deployed, *us[2:]])} | "
                             f"{row['limit']:.0f} | {fmt(row['mono'])} | {fmt(row['deployed_mono'])} | "
                             f"{fmt(row['lim'])} | {fmt(row['deployed_lim'])} | {fmt(row['eager'])} | "
                             f"{fmt(row['fused'])} | {100 * row['dispatch']:.0f} | {100 * row['deployed_dispatch']:.0f} |")
            lines.append("")
    lines += ["## Targets (issue 14)", ""]
    for case in cases:
        for n in budgets:
            rows = [table[(case.name, m, n)] for m in case.masks]
            worst = lambda k: max(r[k][0] for r in rows)  # noqa: E731
            won = sum(r["mono"][0] <= 1 for r in rows)
            deployed_won = sum(r["deployed_mono"][0] <= 1 for r in rows)
            lines.append(f"- {case.name} at {n} thread(s): staged ≤ monolithic on {won}/{len(rows)} masks (worst "
                         f"{worst('mono'):.2f}×), deployed on {deployed_won}/{len(rows)} (worst "
                         f"{worst('deployed_mono'):.2f}×); within 1.25× of the limit: staged on "
                         f"{sum(r['lim'][0] <= 1.25 for r in rows)}/{len(rows)} (worst {worst('lim'):.2f}×), deployed "
                         f"on {sum(r['deployed_lim'][0] <= 1.25 for r in rows)}/{len(rows)} (worst "
                         f"{worst('deployed_lim'):.2f}×); deployed/eager worst {worst('deployed_eager'):.2f}× (target "
                         f"0.5); dispatch ≤ 25% (target on the realistic config): staged worst "
                         f"{100 * max(r['dispatch'] for r in rows):.0f}%, deployed worst "
                         f"{100 * max(r['deployed_dispatch'] for r in rows):.0f}%")
    lines.append("")
    return "\n".join(lines)


def expert_forms(case: Case) -> str:
    """Which masks' fused graphs have routed experts, in words."""
    routed = [mask_label(m, case.names) for m in case.masks if case.forms[m] == "routed"]
    if not routed or len(routed) == len(case.masks):
        return f"fused experts {'routed' if routed else 'dense'} on every mask"
    return f"fused experts routed on {', '.join(routed)}, dense on the others"


def plot(table: dict, cases: list[Case], budgets: list[int], path: Path, precision: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(cases), len(budgets), figsize=(6.5 * len(budgets), 4.2 * len(cases)),
                             squeeze=False, sharey=True)
    series = (("mono", "staged / monolithic (same threads)", "tab:blue"),
              ("deployed_mono", "deployed (staged or fused) / monolithic", "tab:purple"),
              ("deployed_lim", "deployed / its limit (its stages alone)", "tab:orange"),
              ("deployed_eager", "deployed / PyTorch eager", "tab:green"))
    for row, case in zip(axes, cases):
        masks = sorted(case.masks, key=lambda k: (-bin(k).count("1"), k))
        x = np.arange(len(masks))
        for ax, n in zip(row, budgets):
            for j, (key, label, color) in enumerate(series):
                ax.bar(x + (j - 1.5) * 0.2, [table[(case.name, m, n)][key][0] for m in masks], 0.2,
                       label=label, color=color)
            ax.axhline(1.0, color="black", lw=1)
            ax.set_yscale("log")
            ax.set_xticks(x, [mask_label(m, case.names) for m in masks], rotation=55, ha="right", fontsize=8)
            ax.set_title(f"{case.name}, {precision}, {n} thread{'s' if n > 1 else ''}", fontsize=10)
            ax.grid(axis="y", which="both", alpha=0.3)
        row[0].set_ylabel("ratio (below 1: runtime faster)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=9,
               bbox_to_anchor=(0.5, 0.95))
    fig.suptitle(f"Runtime vs same-budget baselines, batch 1, ONNX Runtime CPU — {cpu_model()}, "
                 f"{os.cpu_count()} shared cores", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs=3, action="append", required=True, metavar=("NAME", "CHECKPOINT", "ENGINES"),
                        help="a model: its checkpoint and engine bundles, '{threads}' in the path standing "
                             "for the budget")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/budget_race.md"))
    parser.add_argument("--frames", type=int, default=30, help="frames per block")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="the engine bundles' precision; the single-session baselines are quantized alike")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [Case(name, Path(ckpt), engines, args.threads, args.frames, args.precision)
             for name, ckpt, engines in args.case]
    print("models exported and loaded, outputs checked equal", file=sys.stderr, flush=True)
    res = measure(cases, args.threads, args)
    table = summarise(res, cases, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(res, table, cases, args.threads, args))
    plot(table, cases, args.threads, args.out.with_suffix(".png"), args.precision)
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
