#!/usr/bin/env python3
"""What each hot-path change buys, batch 1, side by side in one process.

Variants, interleaved (round r: for every mask, a block of frames of each variant in turn), all on
the same engine files with one intra-op thread:

- ``before``   ``Runtime.infer`` of the tree given by ``--before`` (a checkout of an older commit,
               imported under another package name): the baseline;
- ``infer``    this tree's checked door, ``Runtime.infer(frames_by_name)``;
- ``run``      this tree's trusted door, ``Runtime.run(mask, frames_by_index)`` (the daemon's path);
- ``run/priv`` the trusted door with every ONNX Runtime call made through the private
               ``session._sess.run_with_iobinding`` instead of the public ``run_with_iobinding``:
               what the private call would save;
- ``mono``     one monolithic ONNX Runtime session of the whole model (zeros for missing sensors),
               the baseline a user would otherwise ship.

Outputs are checked equal (1e-5) on every mask before timing. Dispatch share = 1 - (p50 of the
summed stage times of a frame, through timed wrappers of the same engines) / (variant p50).

    python benchmarks/bench_hot_path.py --checkpoint CKPT --engines ENGINES --before /tmp/before \\
        --out benchmarks/results/hot_path_robot4.md
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_runtime import Monolithic, timed_block  # noqa: E402

from edgemoe.core.mask import all_masks, is_present, mask_label  # noqa: E402
from edgemoe.engines.onnxruntime.engine import OrtEngine  # noqa: E402
from edgemoe.engines.target import OrtOptions  # noqa: E402
from edgemoe.profile.environment import cpu_model  # noqa: E402
from edgemoe.profile.timing import TimedEngine  # noqa: E402
from edgemoe.runtime.runtime import Runtime  # noqa: E402
from edgemoe.train.checkpoint import load_checkpoint  # noqa: E402

VARIANTS = ("before", "infer", "run", "run/priv", "mono")


def import_before(tree: Path) -> object:
    """The ``edgemoe`` package of another checkout, importable beside this one as ``edgemoe_before``."""
    work = Path(tempfile.mkdtemp(prefix="edgemoe_before_"))
    shutil.copytree(tree / "edgemoe", work / "edgemoe_before", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (work / "edgemoe_before").rglob("*.py"):
        path.write_text(re.sub(r"\bedgemoe\.", "edgemoe_before.", path.read_text()))
    sys.path.insert(0, str(work))
    return importlib.import_module("edgemoe_before.runtime.runtime")


def private_calls(runtime: Runtime) -> None:
    """Swap every bound ONNX Runtime call of ``runtime``'s engines for the private C++ entry point."""
    for engine in (*runtime.bundle.engines.values(), *runtime.bundle.fused.values()):
        assert isinstance(engine, OrtEngine)
        for key, (_, views, binding) in list(engine._bindings.items()):
            call = functools.partial(engine.session._sess.run_with_iobinding, binding._iobinding, None)
            engine._bindings[key] = (call, views, binding)


def stage_sums(runtime: Runtime, masks: list[int], frames: dict[int, list]) -> dict[int, float]:
    """p50 (s) of a frame's summed stage times, through timed wrappers of the same engines."""
    timed = {name: TimedEngine(e) for name, e in runtime.bundle.engines.items()}
    probe = Runtime(dataclasses.replace(runtime.bundle, engines=dict(timed), fused={}))
    out = {}
    for mask in masks:
        sums = []
        for frame in frames[mask]:
            for e in timed.values():
                e.spent.clear()
            probe.run(mask, frame)
            sums.append(sum(sum(e.spent) for e in timed.values()) * 1e-9)
        out[mask] = float(np.median(sums[len(sums) // 5:]))
    return out


def measure(args: argparse.Namespace) -> dict:
    before_module = import_before(args.before)
    before = before_module.Runtime.load(args.engines)
    after = Runtime.load(args.engines)
    private = Runtime.load(args.engines)
    private_calls(private)
    model = load_checkpoint(args.checkpoint).model.eval()
    mono = Monolithic(model, OrtOptions.model_validate(after.bundle.manifest.target["onnxruntime"]))
    masks = all_masks(after.config.num_sensors)
    rng = np.random.default_rng(0)
    sensors = after.config.sensors
    prepared, trusted = {}, {}
    for mask in masks:
        named = [{s.name: (rng.standard_normal(s.shape).astype(np.float32) if is_present(mask, i) else None)
                  for i, s in enumerate(sensors)} for _ in range(args.frames)]
        by_index = [{i: f[s.name][None] for i, s in enumerate(sensors) if f[s.name] is not None} for f in named]
        trusted[mask] = by_index
        prepared[mask] = {
            "before": (named, before.infer),
            "infer": (named, after.infer),
            "run": (by_index, functools.partial(after.run, mask)),
            "run/priv": (by_index, functools.partial(private.run, mask)),
            "mono": ([mono.feed(f) for f in named], mono),
        }
        want = after.infer(named[0]).probs
        got = {"before": before.infer(named[0]).probs, "run": after.run(mask, by_index[0]).probs,
               "run/priv": private.run(mask, by_index[0]).probs, "mono": np.array(mono(mono.feed(named[0])))[0]}
        for name, probs in got.items():
            assert np.abs(probs - want).max() < (1e-4 if name == "mono" else 1e-5), f"mask {mask}: {name} differs"
    load_before = os.getloadavg()
    per_round = {(m, v): [] for m in masks for v in VARIANTS}
    samples = {(m, v): [] for m in masks for v in VARIANTS}
    for r in range(args.rounds):
        for mask in masks:
            for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                took = timed_block(*prepared[mask][variant], args.warmup)
                per_round[(mask, variant)].append(float(np.median(took)))
                samples[(mask, variant)] += took
    load_after = os.getloadavg()
    stages = stage_sums(after, masks, trusted)
    return {"masks": masks, "names": after.sensor_names, "per_round": per_round, "samples": samples,
            "stages": stages, "load": (load_before, load_after)}


def report(res: dict, args: argparse.Namespace) -> str:
    masks, names, pr, s, stages = res["masks"], res["names"], res["per_round"], res["samples"], res["stages"]
    p50 = {k: float(np.median(v)) * 1e6 for k, v in s.items()}

    def ratio(mask: int, a: str, b: str) -> str:
        r = np.array(pr[(mask, a)]) / np.array(pr[(mask, b)])
        return f"{np.median(r):.2f} [{r.min():.2f}–{r.max():.2f}]"

    def share(mask: int, variant: str) -> str:
        return f"{100 * (1 - stages[mask] * 1e6 / p50[(mask, variant)]):.0f}%"

    lines = [
        "# Hot path: what each change buys (batch 1, one thread, interleaved)", "",
        f"Command: `python benchmarks/bench_hot_path.py {' '.join(sys.argv[1:])}`", "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, shared with other jobs: load average "
        f"{res['load'][0][0]:.1f} before, {res['load'][1][0]:.1f} after (1-min). ONNX Runtime one intra-op thread "
        f"per session. {args.rounds} rounds × every mask × {len(VARIANTS)} variants (order reversed every other "
        f"round), {args.frames} frames per block after {args.warmup} warm-up. p50 over all rounds in µs; ratios are "
        "the median of the per-round p50 ratios, [min–max over rounds] is the spread. Outputs checked equal "
        "on every mask first (1e-5; monolithic 1e-4). `before` = the tree at `--before`.", "",
        "| mask | before | infer | run | run/priv | mono | stage sum | before/mono | run/mono | run/before | "
        "run/priv ÷ run | dispatch before | dispatch run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in sorted(masks, key=lambda k: (-k.bit_count(), k)):
        lines.append(
            f"| {mask_label(k, names)} | {p50[(k, 'before')]:.0f} | {p50[(k, 'infer')]:.0f} | {p50[(k, 'run')]:.0f} "
            f"| {p50[(k, 'run/priv')]:.0f} | {p50[(k, 'mono')]:.0f} | {stages[k] * 1e6:.0f} | "
            f"{ratio(k, 'before', 'mono')} | {ratio(k, 'run', 'mono')} | {ratio(k, 'run', 'before')} | "
            f"{ratio(k, 'run/priv', 'run')} | {share(k, 'before')} | {share(k, 'run')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--engines", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the baseline commit")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = report(measure(args), args)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
