"""``edgemoe data synth|check|pack``."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.core.schema import load_config
from edgemoe.data.dataset import load_dataset
from edgemoe.data.shards import is_sharded, open_sharded, pack_npz
from edgemoe.data.synthetic import write_synthetic


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    synth = sub.add_parser("synth", help="write the default synthetic dataset")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", type=float, default=1.0, help="shrink or grow the splits")
    synth.set_defaults(func=synthesise)
    check = sub.add_parser("check", help="validate a dataset directory (.npz or sharded) against a config")
    check.add_argument("data", type=Path)
    check.add_argument("--config", type=Path, default=None)
    check.set_defaults(func=validate)
    pack = sub.add_parser("pack", help="convert an .npz dataset into the sharded, streaming format")
    pack.add_argument("source", type=Path, help="dataset directory with train/val/test .npz")
    pack.add_argument("--out", type=Path, required=True, help="sharded dataset directory to write")
    pack.add_argument("--shard-size", type=int, required=True, help="samples per shard")
    pack.add_argument("--config", type=Path, default=None)
    pack.add_argument("--force", action="store_true", help="replace --out if it exists")
    pack.set_defaults(func=pack_shards)


def synthesise(args: argparse.Namespace) -> int:
    sizes = write_synthetic(load_config(args.config), args.out, args.seed, args.scale)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    return 0


def validate(args: argparse.Namespace) -> int:
    """Every check of loading; for shards also the sha256 of every file."""
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
    sizes = pack_npz(args.source, args.out, load_config(args.config), args.shard_size, overwrite=args.force)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
          + f" samples in shards of {args.shard_size}")
    return 0
