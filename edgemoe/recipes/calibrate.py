"""``edgemoe calibrate BUNDLE --data DIR [--recipe default]``: INT8/FP16 variants + precision per stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.recipes.conventions import progress, refuse_overwrite


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="model bundle directory from 'edgemoe export' (updated in place)")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (train/val/test .npz)")
    parser.add_argument("--recipe", default=None,
                        help="calibration recipe: a name shipped with edgemoe or under ./calibration/, "
                             "or a YAML path (default: default)")
    parser.add_argument("--method", choices=("routing-aware", "naive"), default=None, help="override the recipe")
    parser.add_argument("--sets", type=Path, default=None, help="reuse a saved calibration-set .npz")
    parser.add_argument("--save-sets", type=Path, default=None,
                        help="also copy the sets to this .npz (e.g. calibration/sets/NAME.npz)")
    parser.add_argument("--force", action="store_true", help="replace an existing --save-sets file")
    parser.set_defaults(func=run, interrupted="the bundle was left as it was")


def run(args: argparse.Namespace) -> int:
    import shutil

    from edgemoe.calibrate.pipeline import calibrate_bundle
    from edgemoe.calibrate.recipe import load_recipe
    from edgemoe.calibrate.sets import load_sets

    if args.save_sets:
        refuse_overwrite(args.save_sets, args.force, "--save-sets")
    recipe = load_recipe(args.recipe).with_overrides({"method": args.method})
    progress(f"recipe '{recipe.name}': {recipe.method}, P(missing) {recipe.missing or 'none'}")
    sets = load_sets(args.sets) if args.sets else None
    result = calibrate_bundle(args.bundle, args.data, recipe, sets, log=progress)
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
