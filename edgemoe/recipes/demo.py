"""``edgemoe demo``: the whole pipeline once, on this machine, in a few minutes.

synthesise -> train -> evaluate -> export -> build (cpu) -> replay a sensor stream with scripted
dropouts through the runtime, printing per frame the live mask, the engines chosen and the
prediction; ends with accuracy per mask and latency p50/p99.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgemoe.core.mask import mask_label
from edgemoe.data.dataset import Split
from edgemoe.recipes.conventions import refuse_overwrite

console = Console()


@dataclass(frozen=True)
class Outage:
    """Frames ``start..stop`` lose ``sensors``; ``nan`` sends NaN-filled frames instead of none."""

    start: int
    stop: int
    sensors: tuple[str, ...]
    nan: bool = False


def default_script(frames: int) -> list[Outage]:
    """A robot's bad afternoon, scaled to the stream length."""
    f = frames / 100
    return [
        Outage(int(10 * f), int(30 * f), ("camera",)),  # camera unplugged
        Outage(int(25 * f), int(40 * f), ("imu",), nan=True),  # IMU driver emits NaN
        Outage(int(50 * f), int(65 * f), ("scan", "odom")),  # scan and odometry lost together
        Outage(int(75 * f), int(90 * f), ("camera", "scan", "imu")),  # only odometry left
        Outage(int(95 * f), int(97 * f), ("camera", "scan", "imu", "odom")),  # total blackout
    ]


def scripted_frames(split: Split, script: list[Outage], count: int, rng: np.random.Generator):
    """Yield ``(index, frames, label)`` with the script's outages applied."""
    order = rng.permutation(len(split))[:count]
    for t, i in enumerate(order):
        frames: dict[str, np.ndarray | None] = {k: v[i] for k, v in split.frames.items()}
        for outage in script:
            if outage.start <= t < outage.stop:
                for name in outage.sensors:
                    frames[name] = np.full_like(split.frames[name][i], np.nan) if outage.nan else None
        yield t, frames, int(split.label[i])


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="working directory")
    parser.add_argument("--force", action="store_true", help="replace an existing working directory")
    parser.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    parser.add_argument("--frames", type=int, default=400, help="frames in the replayed stream")
    parser.add_argument("--show", type=int, default=40, help="frames printed (evenly spaced)")
    parser.set_defaults(func=run, interrupted="the working directory holds the steps finished so far")


def run(args: argparse.Namespace) -> int:
    refuse_overwrite(args.out, args.force)
    from edgemoe.core.schema import load_config
    from edgemoe.data.dataset import load_dataset
    from edgemoe.data.synthetic import write_synthetic
    from edgemoe.engines.build import build_engines
    from edgemoe.engines.target import load_target
    from edgemoe.export.bundle import write_bundle
    from edgemoe.runtime.runtime import Runtime
    from edgemoe.train.checkpoint import load_checkpoint, save_checkpoint
    from edgemoe.train.evaluate import evaluate_masks, format_table
    from edgemoe.train.trainer import Trainer, torch_predictor

    out: Path = args.out
    config = load_config(args.config)
    if args.epochs:
        config = config.model_copy(update={"training": config.training.model_copy(update={"epochs": args.epochs})})
    console.rule("1/6 synthesise data")
    sizes = write_synthetic(config, out / "data")
    console.print(f"{out / 'data'}: {sizes}")
    data = load_dataset(out / "data", config)

    console.rule("2/6 train (sensor dropout, selection on validation)")
    result = Trainer(config, log=console.print).fit(data["train"], data["val"])
    ckpt_path = out / "model.safetensors"
    save_checkpoint(result.model, ckpt_path, {"best_epoch": result.best_epoch, "history": result.history,
                                              "val_table": result.val_table.to_dict()})

    console.rule("3/6 evaluate every mask on the test split")
    table = evaluate_masks(torch_predictor(result.model), data["test"], config, "test")
    console.print(format_table(table))
    table.write_json(out / "eval.json")

    console.rule("4/6 export one ONNX graph per stage")
    write_bundle(load_checkpoint(ckpt_path), out / "bundle", table, force=True,
                 on_stage=lambda name: console.print(f"  export {name}"))

    console.rule("5/6 build engines for target 'cpu'")
    build_engines(out / "bundle", load_target("cpu"), out / "engines", force=True)
    runtime = Runtime.load(out / "engines")
    console.print(f"{len(runtime.bundle.engines)} engines loaded and warmed; {len(runtime.executor.programs)} plans compiled")

    console.rule("6/6 replay a sensor stream with scripted dropouts")
    replay(runtime, data["test"], args.frames, args.show)
    return 0


def compact_engines(engines: tuple[str, ...]) -> str:
    """``encoder[camera], encoder[imu], gate, expert[0], expert[3], head`` -> ``enc camera,imu | gate | exp 0,3 | head``."""
    def inner(prefix: str) -> str:
        return ",".join(e[len(prefix) + 1 : -1] for e in engines if e.startswith(prefix + "["))
    parts = [f"enc {inner('encoder')}"] if any(e.startswith("encoder[") for e in engines) else []
    if any(e.startswith("imputer[") for e in engines):
        parts.append(f"imp {inner('imputer')}")
    parts += [e for e in engines if "[" not in e and e != "head"]
    if any(e.startswith("expert[") for e in engines):
        parts.append(f"exp {inner('expert')}")
    parts += ["head"] if "head" in engines else []
    return " | ".join(parts)


def replay(runtime, split: Split, count: int, show: int) -> None:
    names = runtime.sensor_names
    stride = max(1, count // max(show, 1))
    hits: dict[int, list[bool]] = defaultdict(list)
    latency: dict[int, list[float]] = defaultdict(list)
    shown = Table("frame", "mask", "engines run", "pred", "true", "expected acc", "latency µs")
    previous = None
    for t, frames, label in scripted_frames(split, default_script(count), count, np.random.default_rng(0)):
        pred = runtime.infer(frames)
        latency[pred.mask].append(pred.latency_s)
        if pred.label is not None:
            hits[pred.mask].append(pred.label == label)
        if t % stride == 0 or pred.mask != previous:
            engines = compact_engines(pred.engines) or str(pred.reason)
            expected = "-" if pred.expected_accuracy is None else f"{pred.expected_accuracy:.2f}"
            shown.add_row(str(t), mask_label(pred.mask, names), engines, str(pred.label), str(label), expected,
                          f"{pred.latency_s * 1e6:.0f}")
        previous = pred.mask
    console.print(shown)
    summary = Table("mask", "frames", "accuracy", "p50 µs", "p99 µs", title="replay summary")
    for mask in sorted(latency):
        lat = np.array(latency[mask]) * 1e6
        acc = f"{np.mean(hits[mask]):.3f}" if hits[mask] else "no prediction"
        summary.add_row(mask_label(mask, names), str(len(lat)), acc, f"{np.percentile(lat, 50):.0f}",
                        f"{np.percentile(lat, 99):.0f}")
    every = np.concatenate([np.array(v) for v in latency.values()]) * 1e6
    summary.add_row("all", str(every.size), f"{np.mean([h for v in hits.values() for h in v]):.3f}",
                    f"{np.percentile(every, 50):.0f}", f"{np.percentile(every, 99):.0f}")
    console.print(summary)
