"""``edgemoe bench accuracy --config CFG --data DIR``: rank the missing-sensor methods."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edgemoe.recipes.conventions import refuse_overwrite

QUICK = {"seeds": (0,), "rates": (0.5,), "epochs": 1, "train_limit": 512}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=("accuracy",), help="which benchmark (accuracy: methods per mask)")
    parser.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (train/val/test .npz)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"),
                        help="results directory (default: benchmarks/results)")
    parser.add_argument("--name", default="accuracy", help="file stem of the results")
    parser.add_argument("--force", action="store_true", help="replace existing results of the same name")
    parser.add_argument("--methods", default=None, help="comma list (default: all)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 15, the benchmark budget)")
    parser.add_argument("--train-limit", type=int, default=None, help="cap training samples")
    parser.add_argument("--rates", default=None, help="comma list of rates (default 0.1,0.3,0.5)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="trainings run in parallel (default: one per available core)")
    parser.add_argument("--select-all-epochs", action="store_true",
                        help="validate every epoch (default: only the second half, where the best epoch lies)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, rate 0.5, 512 samples (CI)")
    parser.add_argument("--note", default="", help="text put under the title (e.g. what was reduced)")
    parser.set_defaults(func=run, interrupted="no results were written")


def run(args: argparse.Namespace) -> int:
    from edgemoe.bench.accuracy import BenchSettings, run_benchmark
    from edgemoe.bench.report import write_outputs
    from edgemoe.core.schema import load_config
    from edgemoe.data.dataset import load_dataset

    refuse_overwrite(args.out / f"{args.name}.json", args.force)
    config = load_config(args.config)
    settings = BenchSettings(**(QUICK if args.quick else {}), jobs=max(1, args.jobs),
                             select_late=not args.select_all_epochs)
    if args.methods:
        settings.methods = tuple(args.methods.split(","))
    if args.seeds:
        settings.seeds = tuple(range(args.seeds))
    if args.epochs:
        settings.epochs = args.epochs
    if args.train_limit:
        settings.train_limit = args.train_limit
    if args.rates:
        settings.rates = tuple(float(r) for r in args.rates.split(","))
    data = load_dataset(args.data, config)
    result = run_benchmark(config, data, settings)
    for path in write_outputs(result, args.out, args.name, f"Accuracy benchmark: {config.name}", args.note):
        print(f"wrote {path}")
    print(f"run time {result.seconds / 60:.1f} min")
    return 0
