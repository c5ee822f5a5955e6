"""``edgemoe sign BUNDLE --key KEY``: sign a model or engine bundle; ``--new-key KEY`` makes a key pair."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.core.bundle import verify_bundle
from edgemoe.core.signing import SIGNATURE, generate_key_pair, sign_manifest


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, nargs="?", help="model or engine bundle directory to sign")
    parser.add_argument("--key", type=Path, default=None, help="Ed25519 private key (PEM) to sign with")
    parser.add_argument("--new-key", type=Path, default=None, metavar="KEY",
                        help="write a new private key to KEY (mode 0600) and its public key to KEY.pub, "
                             "the file devices get with --trust; keep both out of any repository")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.new_key is not None:
        public = generate_key_pair(args.new_key)
        print(f"wrote private key {args.new_key} and public key {public}")
    if args.bundle is None:
        if args.new_key is None:
            raise SystemExit("edgemoe sign: give a BUNDLE and --key, or --new-key KEY")
        return 0
    key = args.key or args.new_key
    if key is None:
        raise SystemExit("edgemoe sign: --key KEY is required to sign a bundle")
    body, manifest = verify_bundle(args.bundle)
    key_id = sign_manifest(args.bundle, key, body)
    print(f"signed {args.bundle} ({manifest.format}) with key {key_id}: {args.bundle / SIGNATURE}")
    return 0
