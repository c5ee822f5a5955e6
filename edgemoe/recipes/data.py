"""``edgemoe data synth|check``."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.recipes.conventions import progress, refuse_overwrite, require_directory_path


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    synth = sub.add_parser("synth", help="write the default synthetic dataset",
                           description="Write train/val/test .npz files of the synthetic robot dataset.")
    synth.add_argument("--out", type=Path, required=True, help="dataset directory to create")
    synth.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    synth.add_argument("--seed", type=int, default=0, help="random seed of the generator")
    synth.add_argument("--scale", type=float, default=1.0, help="shrink or grow the splits")
    synth.add_argument("--regime", default=None,
                       help="a sensor-failure regime of the accuracy suite instead of the default robot "
                            "(docs/dataset.md; 'edgemoe bench accuracy --suite' lists them)")
    synth.add_argument("--force", action="store_true", help="replace an existing dataset directory")
    synth.set_defaults(func=synthesise, interrupted="the dataset directory was not written")
    check = sub.add_parser("check", help="validate a dataset directory against a config",
                           description="Validate a dataset directory against a model config.")
    check.add_argument("data", type=Path, help="dataset directory (train/val/test .npz)")
    check.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    check.set_defaults(func=validate)


def synthesise(args: argparse.Namespace) -> int:
    from edgemoe.core.bundle import staged_directory
    from edgemoe.core.schema import load_config
    from edgemoe.data.regimes import get_regime, write_regime
    from edgemoe.data.synthetic import write_synthetic

    require_directory_path(args.out)
    refuse_overwrite(args.out, args.force)
    config = load_config(args.config)
    regime = get_regime(args.regime) if args.regime else None
    progress(f"writing {args.out}")
    with staged_directory(args.out, overwrite=True) as tmp:  # all splits appear together or none
        if regime is not None:
            sizes = write_regime(regime, config, tmp, args.seed, args.scale)
        else:
            sizes = write_synthetic(config, tmp, args.seed, args.scale)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return 0


def validate(args: argparse.Namespace) -> int:
    from edgemoe.core.schema import load_config
    from edgemoe.data.dataset import load_dataset

    splits = load_dataset(args.data, load_config(args.config))
    print(f"{args.data}: ok (" + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + ")")
    return 0
