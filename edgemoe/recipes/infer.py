"""``edgemoe infer ENGINES --data DIR [--mask camera+imu]``: runtime accuracy per mask, no torch."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgemoe.core.mask import all_masks, mask_label, parse_mask
from edgemoe.data.dataset import load_split
from edgemoe.runtime.runtime import Runtime


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engines", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="dataset directory")
    parser.add_argument("--split", default="test")
    parser.add_argument("--mask", action="append", default=None, help="e.g. camera+imu (repeatable; default all)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    runtime = Runtime.load(args.engines)
    names = runtime.sensor_names
    split = load_split(args.data / f"{args.split}.npz", runtime.config)
    masks = [parse_mask(m, names) for m in args.mask] if args.mask else all_masks(len(names))
    accs = []
    for mask in masks:
        probs = runtime.infer_batch(split.frames, mask)
        accs.append(float((probs.argmax(1) == split.label).mean()))
        print(f"{mask_label(mask, names):<28} acc {accs[-1]:.4f}")
    print(f"{'mean':<28} acc {np.mean(accs):.4f}")
    return 0
