"""``edgemoe calibrate BUNDLE --data DIR [--recipe default]``: INT8/FP16 variants + precision per stage."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from edgemoe.calibrate.pipeline import calibrate_bundle
from edgemoe.calibrate.recipe import load_recipe
from edgemoe.calibrate.sets import load_sets


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (train/val/test .npz)")
    parser.add_argument("--recipe", default=None, help="name under calibration/ or a YAML path (default: default)")
    parser.add_argument("--method", choices=("routing-aware", "naive"), default=None, help="override the recipe")
    parser.add_argument("--sets", type=Path, default=None, help="reuse a saved calibration-set .npz")
    parser.add_argument("--save-sets", type=Path, default=None,
                        help="also copy the sets to this .npz (e.g. calibration/sets/NAME.npz)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe).with_overrides({"method": args.method})
    sets = load_sets(args.sets) if args.sets else None
    result = calibrate_bundle(args.bundle, args.data, recipe, sets, log=print)
    if result.report:
        print(f"collected {result.report.frames} frames in {result.report.rounds} round(s); "
              f"routed tokens per expert {result.report.routed_tokens}")
    if args.save_sets:
        args.save_sets.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.bundle / result.manifest.calibration.sets.file, args.save_sets)
        print(f"copied calibration sets to {args.save_sets}")
    choices = {s: e.precision.choice for s, e in result.manifest.stages.items()}
    cost = result.auto.final_cost
    print(f"precision per stage: {choices}")
    print(f"auto on '{recipe.validation_split}' costs {cost.mean:+.2f} mean, {cost.worst:+.2f} worst-mask points "
          f"(mask {cost.worst_mask}); sets {result.sets_sha256[:12]}…")
    return 0
