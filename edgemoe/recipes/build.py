"""``edgemoe build BUNDLE --target PROFILE --out ENGINES`` (run on the target device)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.core.bundle import read_model_manifest
from edgemoe.core.mask import parse_mask_selection
from edgemoe.core.signing import TrustedKey
from edgemoe.engines.build import build_engines
from edgemoe.engines.target import load_target


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--target", default="cpu", help="profile name under engines/ or a YAML path")
    parser.add_argument("--out", type=Path, required=True, help="engine bundle directory to create")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing engine bundle (a symlink is repointed at the new build atomically)")
    parser.add_argument("--trust", type=Path, default=None, metavar="PUBKEY",
                        help="refuse a model bundle not signed by this Ed25519 public key ('edgemoe sign')")
    parser.add_argument("--fuse", action="append", default=None, metavar="MASK",
                        help="build only these masks' fused engines (default: every fused graph in the bundle; "
                             "'none' for none): 'camera+imu', '5', or the fused_choice.json 'edgemoe profile' writes "
                             "(repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    trust = TrustedKey.load(args.trust) if args.trust else None
    fuse = None
    if args.fuse is not None:
        names = read_model_manifest(args.bundle, trust).config.sensor_names
        fuse = parse_mask_selection([v for v in args.fuse if v != "none"], names)
    manifest = build_engines(args.bundle, target, args.out, args.force,
                             on_stage=lambda s, p: print(f"  build {s} ({p}, {target.backend})"), fuse=fuse,
                             trust=trust)
    for stage, entry in manifest.engines.items():
        if entry.fact("providers_missing"):
            print(f"  warning: {stage} runs on {entry.fact('providers')}: onnxruntime lacks "
                  f"{entry.fact('providers_missing')} (install onnxruntime-gpu, or set 'require_providers: true' "
                  "to refuse)")
        if entry.fact("dla"):
            dla = entry.fact("dla")
            print(f"  {stage}: {len(dla['dla_layers'])} layer group(s) on DLA, {dla['gpu_layers']} on GPU, "
                  f"fell back to GPU: {dla['fell_back_to_gpu'] or 'none'}")
    print(f"wrote {args.out}: {len(manifest.engines)} engines and {len(manifest.fused)} fused "
          f"hot-mask engines for target '{target.name}'")
    return 0
