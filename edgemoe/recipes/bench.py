"""``edgemoe bench accuracy (--suite NAME | --data DIR)``: rank the missing-sensor methods.

Results go to ``--out`` (default ``runs/bench``, git-ignored); recorded results are copied into
``benchmarks/results/`` on purpose, never overwritten by a default.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemoe.recipes.conventions import refuse_overwrite

if TYPE_CHECKING:
    from edgemoe.bench.accuracy import BenchSettings
    from edgemoe.core.schema import ModelConfig
    from edgemoe.data.dataset import Split

QUICK: dict[str, Any] = {"seeds": (0,), "rates": (0.5,), "epochs": 1, "train_limit": 512}
DEFAULT_OUT = Path("runs/bench")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", choices=("accuracy",), help="which benchmark (accuracy: methods per mask)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--suite", dest="regimes", default=None,
                        help="generate the sensor-failure regimes of a suite and run on each "
                             "('failures': all of them; or regimes joined by ',' or '+', e.g. "
                             "'nuisance,robot4'; docs/dataset.md)")
    source.add_argument("--data", type=Path, help="dataset directory (train/val/test .npz)")
    parser.add_argument("--config", type=Path, default=None,
                        help="model config (default: built-in robot4; with --data it must match the data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default {DEFAULT_OUT}; copy results to benchmarks/results to record them)")
    parser.add_argument("--name", default=None, help="file stem of the results (default: 'accuracy' or the suite name)")
    parser.add_argument("--force", action="store_true", help="replace existing results of the same name")
    parser.add_argument("--methods", default=None, help="comma list (default: all)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default 15 with --data, the suite's budget with --suite)")
    parser.add_argument("--train-limit", type=int, default=None, help="cap training samples")
    parser.add_argument("--rates", default=None,
                        help="comma list of random-rate settings (default 0.1,0.3,0.5 with --data, none with "
                             "--suite; '' for none)")
    parser.add_argument("--scale", type=float, default=1.0, help="--suite: shrink or grow every regime's splits")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="trainings run in parallel (default: one per available core)")
    parser.add_argument("--select-all-epochs", action="store_true",
                        help="validate every epoch (default: only the second half, where the best epoch lies)")
    parser.add_argument("--quick", action="store_true",
                        help="CI preset. --data: 1 seed, 1 epoch, rate 0.5, 512 samples. --suite: the nuisance regime, "
                             "1 seed, smoe and dedicated only; fails if its headroom is below 5 pts")
    parser.add_argument("--note", default="", help="text put under the title (e.g. what was reduced)")
    parser.set_defaults(func=run, interrupted="no results were written")


def run(args: argparse.Namespace) -> int:
    from edgemoe.bench.accuracy import run_benchmark
    from edgemoe.bench.report import write_outputs, write_suite_outputs
    from edgemoe.bench.suite import run_quick, run_suite, suite_name
    from edgemoe.core.schema import load_config

    if args.regimes:
        args.regimes = suite_name(args.regimes)  # an unknown suite or regime fails before anything runs
    refuse_overwrite(args.out / f"{args.name or ('suite_' + args.regimes if args.regimes else 'accuracy')}.json",
                     args.force)
    config = load_config(args.config)
    settings = _settings(args)
    note = "\n\n".join(x for x in (f"Command: `{args.command}`", args.note) if x)
    if args.regimes:
        title = lambda suite: (f"Accuracy suite '{suite.name}': "  # noqa: E731
                               f"{', '.join(r.regime.name for r in suite.regimes)} (model config {config.name})")
        stem = lambda suite: args.name or f"suite_{suite.name}"  # noqa: E731
        if args.quick:
            suite = run_quick(config, settings)
        else:
            suite = run_suite(args.regimes, config, settings, scale=args.scale, on_regime=lambda s: write_suite_outputs(
                s, args.out, stem(s), title(s), note + " (partial: regimes still running)"))
        paths = write_suite_outputs(suite, args.out, stem(suite), title(suite), note)
        seconds = suite.seconds
    else:
        data = _load(args.data, config, explicit=args.config is not None)
        result = run_benchmark(config, data, settings)
        paths = write_outputs(result, args.out, args.name or "accuracy", f"Accuracy benchmark: {config.name}", note)
        seconds = result.seconds
    for path in paths:
        print(f"wrote {path}")
    print(f"run time {seconds / 60:.1f} min")
    return 0


def _settings(args: argparse.Namespace) -> BenchSettings:
    from edgemoe.bench.accuracy import BenchSettings
    from edgemoe.bench.suite import SUITE_EPOCHS

    preset = QUICK if args.quick and not args.regimes else {}
    settings = BenchSettings(**preset, jobs=max(1, args.jobs), select_late=not args.select_all_epochs)
    if args.regimes and not args.quick:
        settings.rates, settings.epochs = (), SUITE_EPOCHS
    if args.methods:
        settings.methods = tuple(args.methods.split(","))
    if args.seeds:
        settings.seeds = tuple(range(args.seeds))
    if args.epochs:
        settings.epochs = args.epochs
    if args.train_limit:
        settings.train_limit = args.train_limit
    if args.rates is not None:
        settings.rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
    return settings


def _load(directory: Path, config: ModelConfig, explicit: bool) -> dict[str, Split]:
    """Load the data set; without ``--config`` a mismatch says that robot4 was assumed."""
    from edgemoe.core.errors import DatasetError
    from edgemoe.data.dataset import load_dataset

    try:
        return load_dataset(directory, config)
    except DatasetError as exc:
        if explicit:
            raise
        raise DatasetError(f"{exc} -- no --config was given, so the built-in '{config.name}' schema was "
                           "assumed; pass --config with the data set's model config") from None
