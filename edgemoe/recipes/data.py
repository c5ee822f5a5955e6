"""``edgemoe data synth|check|pack``."""

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
    check = sub.add_parser("check", help="validate a dataset directory (.npz or sharded) against a config",
                           description="Validate a dataset directory (.npz or sharded) against a model config.")
    check.add_argument("data", type=Path, help="dataset directory (train/val/test .npz, or dataset.json)")
    check.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    check.set_defaults(func=validate)
    pack = sub.add_parser("pack", help="convert an .npz dataset into the sharded, streaming format")
    pack.add_argument("source", type=Path, help="dataset directory with train/val/test .npz")
    pack.add_argument("--out", type=Path, required=True, help="sharded dataset directory to write")
    pack.add_argument("--shard-size", type=int, required=True, help="samples per shard")
    pack.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    pack.add_argument("--force", action="store_true", help="replace --out if it exists")
    pack.set_defaults(func=pack_shards, interrupted="the sharded dataset was not written")


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
    """Every check of loading; for shards also the sha256 of every file."""
    from edgemoe.core.schema import load_config
    from edgemoe.data.dataset import load_dataset
    from edgemoe.data.shards import is_sharded, open_sharded

    config = load_config(args.config)
    if is_sharded(args.data):
        shards = open_sharded(args.data, config)
        for split in shards.values():
            split.verify()
        sizes, kind = {k: len(v) for k, v in shards.items()}, "sharded"
    else:
        sizes, kind = {k: len(v) for k, v in load_dataset(args.data, config).items()}, ".npz"
    print(f"{args.data}: ok, {kind} (" + ", ".join(f"{k} {n}" for k, n in sizes.items()) + ")")
    return 0


def pack_shards(args: argparse.Namespace) -> int:
    from edgemoe.core.schema import load_config
    from edgemoe.data.shards import pack_npz

    require_directory_path(args.out)
    refuse_overwrite(args.out, args.force)
    sizes = pack_npz(args.source, args.out, load_config(args.config), args.shard_size, overwrite=args.force)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
          + f" samples in shards of {args.shard_size}")
    return 0
