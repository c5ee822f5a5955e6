"""``edgemoe build BUNDLE --target PROFILE --out ENGINES`` (run on the target device)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.core.bundle import MODEL_FORMAT, config_of, read_manifest
from edgemoe.core.mask import parse_mask_selection
from edgemoe.engines.build import build_engines
from edgemoe.engines.target import load_target
from edgemoe.engines.tensorrt.report import dla_summary


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--target", default="cpu", help="profile name under engines/ or a YAML path")
    parser.add_argument("--out", type=Path, required=True, help="engine bundle directory to create")
    parser.add_argument("--force", action="store_true", help="replace an existing engine bundle")
    parser.add_argument("--fuse", action="append", default=None, metavar="MASK",
                        help="build only these masks' fused engines (default: every fused graph in the bundle; "
                             "'none' for none): 'camera+imu', '5', or the fused_choice.json 'edgemoe profile' writes "
                             "(repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    fuse = None
    if args.fuse is not None:
        names = config_of(read_manifest(args.bundle, MODEL_FORMAT), str(args.bundle)).sensor_names
        fuse = parse_mask_selection([v for v in args.fuse if v != "none"], names)
    manifest = build_engines(args.bundle, target, args.out, args.force,
                             on_stage=lambda s, p: print(f"  build {s} ({p}, {target.backend})"), fuse=fuse)
    for stage, entry in manifest["engines"].items():
        if entry.get("providers_missing"):
            print(f"  warning: {stage} runs on {entry['providers']}: onnxruntime lacks {entry['providers_missing']} "
                  "(install onnxruntime-gpu, or set 'require_providers: true' to refuse)")
        if entry.get("dla"):  # a stage the profile sends to the DLA: where it really landed, or why not
            print(f"  {stage}: DLA placement: {dla_summary(entry)}")
    print(f"wrote {args.out}: {len(manifest['engines'])} engines and {len(manifest['fused'])} fused "
          f"hot-mask engines for target '{target.name}'")
    return 0
