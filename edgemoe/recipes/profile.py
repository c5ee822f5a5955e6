"""``edgemoe profile ENGINES --out DIR`` and ``edgemoe profile compare A B`` (torch-free)."""

from __future__ import annotations

import argparse

from edgemoe.profile.cli import add_arguments, main


def register(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.set_defaults(func=main)
