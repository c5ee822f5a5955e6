"""The ``edgemoe`` command: a thin dispatcher over recipe modules.

Each verb lives in its own module under ``edgemoe.recipes`` with ``register(subparsers)``; a
module is imported only when its verb runs, so ``edgemoe run`` on a device never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgemoe.core.errors import EdgeMoEError

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
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgemoe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for verb, (module, help_text) in VERBS.items():
        if verb == wanted:
            importlib.import_module(module).register(sub.add_parser(verb, help=help_text))
        else:
            sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EdgeMoEError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
