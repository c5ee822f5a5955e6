"""``edgemoe export CKPT --out BUNDLE``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgemoe.recipes.conventions import StageTimer, emit_json, refuse_overwrite, require_directory_path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="checkpoint file (.safetensors) from 'edgemoe train'")
    parser.add_argument("--out", type=Path, required=True, help="model bundle directory to create")
    parser.add_argument("--eval", type=Path, default=None,
                        help="per-mask table from 'edgemoe eval' to ship as expected accuracy "
                             "(default: the checkpoint's validation table)")
    parser.add_argument("--max-batch", type=int, default=None, help="largest batch the graphs accept (default 8)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    parser.add_argument("--fuse", action="append", default=[], metavar="MASK",
                        help="also export this mask's whole forward as one fused batch-1 graph (hot masks): "
                             "'camera+imu', '5', 'all', or the fused_choice.json 'edgemoe profile' writes "
                             "(repeatable)")
    parser.add_argument("--fused-experts", choices=("auto", "dense", "routed"), default="auto",
                        help="form of the fused graphs' experts: 'dense' (every expert on every token, static "
                             "shapes: what TensorRT builds), 'routed' (each expert on the tokens routed to it), "
                             "'auto' (default: time both with ONNX Runtime here, keep the faster per mask)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    parser.set_defaults(func=run, interrupted="the bundle directory was not written (left as it was)")


def run(args: argparse.Namespace) -> int:
    from edgemoe.core.mask import parse_mask_selection
    from edgemoe.export.bundle import DEFAULT_MAX_BATCH, write_bundle
    from edgemoe.train.checkpoint import load_checkpoint
    from edgemoe.train.evaluate import EvalTable

    require_directory_path(args.out)
    refuse_overwrite(args.out, args.force)
    ckpt = load_checkpoint(args.checkpoint)
    table = EvalTable.from_dict(json.loads(args.eval.read_text())) if args.eval else None
    fuse = parse_mask_selection(args.fuse, ckpt.config.sensor_names)
    timer = StageTimer("export")
    manifest = write_bundle(ckpt, args.out, table, args.max_batch or DEFAULT_MAX_BATCH, args.force,
                            on_stage=timer.start, fuse_masks=fuse,
                            fused_experts=args.fused_experts)
    total = timer.finish()
    summary = {"bundle": str(args.out), "stages": len(manifest.stages), "fused": len(manifest.fused),
               "opset": manifest.opset, "seconds": round(total, 3), "timing": timer.rows}
    if args.json:
        emit_json(summary)
        return 0
    print(timer.table(total))
    print(f"wrote {args.out}: {summary['stages']} stages, {summary['fused']} fused masks, opset {summary['opset']}")
    return 0
