"""``edgemoe completion bash|zsh|tcsh``: a completion script generated from the parser."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "tcsh")


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Print a completion script for SHELL. bash: "
                          "'edgemoe completion bash > ~/.local/share/bash-completion/completions/edgemoe'; "
                          "zsh: 'edgemoe completion zsh > \"${fpath[1]}/_edgemoe\"'.")
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shtab

    from edgemoe.cli import build_parser

    print(shtab.complete(build_parser([], every_verb=True), args.shell))
    return 0
