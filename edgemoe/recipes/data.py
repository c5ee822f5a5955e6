"""``edgemoe data synth|check``."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.core.schema import load_config
from edgemoe.data.dataset import load_dataset
from edgemoe.data.regimes import REGIMES, get_regime, write_regime
from edgemoe.data.synthetic import write_synthetic


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    synth = sub.add_parser("synth", help="write the default synthetic dataset")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", type=float, default=1.0, help="shrink or grow the splits")
    synth.add_argument("--regime", choices=tuple(REGIMES), default=None,
                       help="a sensor-failure regime of the accuracy suite instead of the default robot (docs/dataset.md)")
    synth.set_defaults(func=synthesise)
    check = sub.add_parser("check", help="validate a dataset directory against a config")
    check.add_argument("data", type=Path)
    check.add_argument("--config", type=Path, default=None)
    check.set_defaults(func=validate)


def synthesise(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.regime:
        sizes = write_regime(get_regime(args.regime), config, args.out, args.seed, args.scale)
    else:
        sizes = write_synthetic(config, args.out, args.seed, args.scale)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return 0


def validate(args: argparse.Namespace) -> int:
    splits = load_dataset(args.data, load_config(args.config))
    print(f"{args.data}: ok (" + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + ")")
    return 0
