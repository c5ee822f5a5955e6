"""``edgemoe build BUNDLE --target PROFILE --out ENGINES`` (run on the target device)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.engines.build import build_engines
from edgemoe.engines.target import load_target


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--target", default="cpu", help="profile name under engines/ or a YAML path")
    parser.add_argument("--out", type=Path, required=True, help="engine bundle directory to create")
    parser.add_argument("--force", action="store_true", help="replace an existing engine bundle")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    manifest = build_engines(args.bundle, target, args.out, args.force,
                             on_stage=lambda s, p: print(f"  build {s} ({p}, {target.backend})"))
    print(f"wrote {args.out}: {len(manifest['engines'])} engines for target '{target.name}'")
    return 0
