"""``edgemoe export CKPT --out BUNDLE``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgemoe.core.mask import parse_mask_selection
from edgemoe.export.bundle import DEFAULT_MAX_BATCH, write_bundle
from edgemoe.train.checkpoint import load_checkpoint
from edgemoe.train.evaluate import EvalTable


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to create")
    parser.add_argument("--eval", type=Path, default=None,
                        help="per-mask table from 'edgemoe eval' to ship as expected accuracy "
                             "(default: the checkpoint's validation table)")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    parser.add_argument("--fuse", action="append", default=[], metavar="MASK",
                        help="also export this mask's whole forward as one fused batch-1 graph (hot masks): "
                             "'camera+imu', '5', 'all', or the fused_choice.json 'edgemoe profile' writes "
                             "(repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    table = EvalTable.from_dict(json.loads(args.eval.read_text())) if args.eval else None
    fuse = parse_mask_selection(args.fuse, ckpt.config.sensor_names)
    manifest = write_bundle(ckpt, args.out, table, args.max_batch, args.force,
                            on_stage=lambda name: print(f"  export {name}"), fuse_masks=fuse)
    print(f"wrote {args.out}: {len(manifest.stages)} stages, {len(manifest.fused)} fused masks, "
          f"opset {manifest.opset}")
    return 0
