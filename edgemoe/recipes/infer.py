"""``edgemoe infer ENGINES --data DIR [--mask camera+imu]``: runtime accuracy per mask, no torch."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.recipes.conventions import emit_json, non_empty


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engines", type=Path, help="engine bundle directory from 'edgemoe build'")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (train/val/test .npz)")
    parser.add_argument("--split", default="test", help="which split file of --data (default: test)")
    parser.add_argument("--mask", action="append", default=None, type=non_empty("mask"),
                        help="sensors present, e.g. camera+imu or a bit number (repeatable; default every mask)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from edgemoe.core.mask import all_masks, mask_label, parse_mask
    from edgemoe.data.dataset import load_split
    from edgemoe.runtime.runtime import Runtime

    runtime = Runtime.load(args.engines)
    names = runtime.sensor_names
    masks = [parse_mask(m, names) for m in args.mask] if args.mask else all_masks(len(names))
    split = load_split(args.data / f"{args.split}.npz", runtime.config)
    rows = []
    for mask in masks:
        probs = runtime.infer_batch(split.frames, mask)
        rows.append({"mask": mask_label(mask, names), "bits": mask,
                     "accuracy": float((probs.argmax(1) == split.label).mean())})
    mean = float(np.mean([r["accuracy"] for r in rows]))
    if args.json:
        emit_json({"engines": str(args.engines), "split": args.split, "samples": len(split.label),
                   "masks": rows, "mean_accuracy": mean})
        return 0
    for row in rows:
        print(f"{row['mask']:<28} acc {row['accuracy']:.4f}")
    print(f"{'mean':<28} acc {mean:.4f}")
    return 0
