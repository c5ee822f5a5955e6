"""``edgemoe profile ENGINES --out DIR`` and ``edgemoe profile compare A B`` (torch-free)."""

from __future__ import annotations

import argparse

from edgemoe.profile.cli import COMPARE, add_arguments, main
from edgemoe.recipes.conventions import OUTPUT, UsageError, refuse_overwrite, require_directory_path


def register(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.add_argument("--force", action="store_true", help="replace an existing report directory")
    parser.set_defaults(func=run, interrupted="the report directory may be incomplete; rerun with --force")


def run(args: argparse.Namespace) -> int:
    if str(args.paths[0]) != COMPARE:
        if args.out is None:
            raise UsageError("--out DIR is required (where profile.json, profile.md and the plots go)")
        require_directory_path(args.out)
        refuse_overwrite(args.out, args.force)
    args.no_progress = args.no_progress or OUTPUT.quiet
    return main(args)
