"""``edgemoe demo``: the whole pipeline once, on this machine, in a few minutes.

synthesise -> train -> evaluate -> export -> build (cpu) -> replay the test split with scripted
dropouts through the daemon's own replay source, tracker and loop, printing per frame the live
mask, the engines chosen and the prediction; ends with accuracy per mask and latency p50/p99.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.table import Table

from edgemoe.core.mask import mask_label
from edgemoe.daemon.config import Dropout
from edgemoe.recipes.conventions import refuse_overwrite

if TYPE_CHECKING:
    from edgemoe.runtime.runtime import Runtime

console = Console()


PERIOD_S = 0.5  # seconds each recorded sample is replayed for (the daemon's Replay.sample_period_s)


def default_script(frames: int) -> list[Dropout]:
    """A robot's bad afternoon, scaled to the stream length, as the daemon's replay dropouts."""
    pct = frames / 100 * PERIOD_S  # seconds per 1% of the stream

    def out(sensors: tuple[str, ...], start: int, stop: int, mode: str = "silent") -> list[Dropout]:
        return [Dropout(sensor=s, start_s=start * pct, end_s=stop * pct, mode=mode) for s in sensors]

    return [
        *out(("camera",), 10, 30),  # camera unplugged
        *out(("imu",), 25, 40, "nan"),  # IMU driver emits NaN
        *out(("scan", "odom"), 50, 65),  # scan and odometry lost together
        *out(("camera", "scan", "imu"), 75, 90),  # only odometry left
        *out(("camera", "scan", "imu", "odom"), 95, 97),  # total blackout
    ]


class _Records:
    """A daemon sink that keeps the prediction records in memory."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, line: bytes) -> None:
        self.records.append(json.loads(line))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def replayed(runtime: Runtime, dataset: Path, count: int) -> Iterator[tuple[int, dict[str, Any], int]]:
    """Replay the test split through the daemon's own path — its ``ReplaySource`` with the
    scripted dropouts, wire parser, availability tracker (no hysteresis, so the table follows the
    script) and loop — on a simulated clock, one prediction per recorded sample, taken when every
    sensor has sent that sample. Yields ``(sample, the daemon's record, true label)``."""
    from edgemoe.daemon.config import Loop, Replay
    from edgemoe.daemon.loop import SensorLoop
    from edgemoe.daemon.metrics import DaemonMetrics, Health
    from edgemoe.daemon.sources import ReplaySource
    from edgemoe.daemon.tracker import AvailabilityTracker
    from edgemoe.data.dataset import load_split

    config = runtime.config
    labels = load_split(dataset / "test.npz", config).label
    count = min(count, len(labels))
    spec = Replay(dataset=dataset, split="test", sample_period_s=PERIOD_S, repeat=False,
                  dropouts=tuple(default_script(count)))
    sink = _Records()
    loop = SensorLoop(runtime, "demo", AvailabilityTracker(config, hold_s=0.0),
                      [source := ReplaySource(spec, config, clock=lambda: 0.0)], [sink],
                      DaemonMetrics(config.sensor_names), Health(stale_s=1.0), Loop())
    for sample in range(count):
        now = (sample + 0.9) * PERIOD_S
        for datagram in source.receive(now, limit=1 << 20):
            loop.ingest(datagram, now)
        made = len(sink.records)
        loop.predict(now)
        if len(sink.records) > made:
            yield sample, sink.records[-1], int(labels[sample])


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
    replay(runtime, out / "data", args.frames, args.show)
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


def replay(runtime: Runtime, dataset: Path, count: int, show: int) -> None:
    names = runtime.sensor_names
    stride = max(1, count // max(show, 1))
    hits: dict[int, list[bool]] = defaultdict(list)
    latency: dict[int, list[float]] = defaultdict(list)
    shown = Table("frame", "mask", "engines run", "pred", "true", "expected acc", "latency µs")
    previous = None
    for t, record, label in replayed(runtime, dataset, count):
        mask, pred = record["mask"], record["label"]
        latency[mask].append(record["latency_ms"] * 1e-3)
        if pred is not None:
            hits[mask].append(pred == label)
        if t % stride == 0 or mask != previous:
            engines = compact_engines(tuple(record["engines"])) or str(record["reason"])
            expected = "-" if record["expected_accuracy"] is None else f"{record['expected_accuracy']:.2f}"
            shown.add_row(str(t), mask_label(mask, names), engines, str(pred), str(label), expected,
                          f"{record['latency_ms'] * 1e3:.0f}")
        previous = mask
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
