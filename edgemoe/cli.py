"""The edgemoe command: train, export, calibrate, build and run a missing-sensor-robust MoE.

A thin dispatcher: each verb lives in its own module under ``edgemoe.recipes`` with
``register(parser)``, and only the verb being run is imported, so ``edgemoe run`` on a device never
imports torch. What all verbs share (exit codes, one-line errors, the overwrite rule, progress on
stderr) is in ``edgemoe.recipes.conventions``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version

from edgemoe import __version__
from edgemoe.core.errors import EdgeMoEError
from edgemoe.recipes.conventions import (
    EXIT_FAILURE,
    configure_logging,
    OUTPUT,
    exit_code,
    missing_extra,
    one_line,
)

# verb -> (recipe module, one-line help). Adding a verb is one line here plus its module.
VERBS: dict[str, tuple[str, str]] = {
    "data": ("edgemoe.recipes.data", "write or check datasets in the on-disk format"),
    "train": ("edgemoe.recipes.train", "train a model from a config and a dataset"),
    "eval": ("edgemoe.recipes.eval", "accuracy / macro-F1 per sensor mask of a checkpoint"),
    "export": ("edgemoe.recipes.export", "cut a checkpoint into per-stage ONNX graphs (a model bundle)"),
    "calibrate": ("edgemoe.recipes.calibrate", "add routing-aware INT8 (Q/DQ) and FP16 variants and a precision per stage"),
    "sign": ("edgemoe.recipes.sign", "sign a model or engine bundle with an Ed25519 key (--new-key makes one)"),
    "build": ("edgemoe.recipes.build", "build a model bundle into engines for a target profile"),
    "infer": ("edgemoe.recipes.infer", "run the engine runtime on dataset samples under a mask"),
    "profile": ("edgemoe.recipes.profile", "latency profile of an engine bundle per mask; 'profile compare A B'"),
    "run": ("edgemoe.recipes.run", "the sensor-loop daemon: live frames -> availability mask -> predictions"),
    "bench": ("edgemoe.recipes.bench", "rank the missing-sensor methods: accuracy per mask, rates, seeds"),
    "demo": ("edgemoe.recipes.demo", "synthesise, train, export, build and replay a sensor stream"),
    "completion": ("edgemoe.recipes.completion", "print a shell completion script (bash, zsh, tcsh)"),
}
EPILOG = """exit codes: 0 done, 1 failed while running, 2 bad command or input, 130 interrupted.
'edgemoe VERB --help' shows a verb's flags; docs/cli.md describes every verb."""


def version_line() -> str:
    """``edgemoe X (onnxruntime Y, tensorrt Z, torch W)``: what an engine build depends on."""
    def installed(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"
    deps = ", ".join(f"{d} {installed(d)}" for d in ("onnxruntime", "tensorrt", "torch"))
    return f"edgemoe {__version__} ({deps}; python {sys.version.split()[0]})"


def _verbosity_flags(parser: argparse.ArgumentParser, default: object) -> None:
    """``-v``/``-q`` before or after the verb (after it, absent flags keep the top-level value)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=default,
                       help="more log output; -v also turns on TensorRT's verbose builder log")
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="no progress output; errors and results only")


def verb_parser(sub: argparse._SubParsersAction, verb: str) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """The verb's parser with its arguments (imports the verb's recipe module)."""
    module, help_text = VERBS[verb]
    parser = sub.add_parser(verb, help=help_text, description=help_text)
    _verbosity_flags(parser, argparse.SUPPRESS)
    importlib.import_module(module).register(parser)
    return parser


def build_parser(argv: list[str], every_verb: bool = False) -> argparse.ArgumentParser:
    """The parser; only the verb named in ``argv`` gets its arguments unless ``every_verb``."""
    parser = argparse.ArgumentParser(prog="edgemoe", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_line())
    _verbosity_flags(parser, None)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for verb, (_, help_text) in VERBS.items():
        if every_verb or verb == wanted:
            verb_parser(sub, verb)
        else:
            sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def innermost_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub-)verb that was chosen, so its usage is the one shown."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return innermost_parser(action.choices[chosen], args)
    return parser


def configure_output(args: argparse.Namespace) -> None:
    OUTPUT.quiet = bool(args.quiet)
    OUTPUT.verbose = int(args.verbose or 0)
    if OUTPUT.verbose:
        os.environ["EDGEMOE_TRT_VERBOSE"] = "1"  # read when the TensorRT backend is imported
    level = logging.WARNING if OUTPUT.quiet else logging.DEBUG if OUTPUT.verbose > 1 else logging.INFO
    configure_logging(level, "%(levelname)s %(name)s: %(message)s")
    import rich

    rich.reconfigure(stderr=True)  # progress bars on stderr: stdout is for results


def report(verb: str, text: str) -> None:
    print(f"edgemoe {verb}: error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), "")
    try:
        parser = build_parser(argv)
    except ModuleNotFoundError as exc:
        if (hint := missing_extra(exc)) is None:
            raise
        report(verb, str(hint))
        return EXIT_FAILURE
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        innermost_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    configure_output(args)
    args.command = "edgemoe " + shlex.join(argv)  # what a recorded result says made it
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        print(f"edgemoe {args.verb}: interrupted; {getattr(args, 'interrupted', 'nothing was written')}",
              file=sys.stderr)
        return exit_code(exc)
    except ModuleNotFoundError as exc:
        if (hint := missing_extra(exc)) is None:
            raise
        report(args.verb, str(hint))
        return exit_code(hint)
    except (EdgeMoEError, OSError) as exc:
        report(args.verb, one_line(exc))
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
