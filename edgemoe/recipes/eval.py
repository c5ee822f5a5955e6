"""``edgemoe eval CKPT --data DIR``: the per-mask table, printed and written as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.recipes.conventions import refuse_overwrite


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="checkpoint file (.safetensors) from 'edgemoe train'")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (train/val/test .npz)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--out", type=Path, default=None, help="JSON table (default: CKPT with .eval.json)")
    parser.add_argument("--force", action="store_true", help="replace an existing JSON table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgemoe.data.dataset import load_dataset
    from edgemoe.train.checkpoint import load_checkpoint
    from edgemoe.train.evaluate import evaluate_masks, format_table
    from edgemoe.train.trainer import torch_predictor

    out = args.out or args.checkpoint.with_suffix(".eval.json")
    refuse_overwrite(out, args.force)
    ckpt = load_checkpoint(args.checkpoint)
    split = load_dataset(args.data, ckpt.config, (args.split,))[args.split]
    table = evaluate_masks(torch_predictor(ckpt.model), split, ckpt.config, args.split)
    print(format_table(table))
    table.write_json(out)
    print(f"wrote {out}")
    return 0
