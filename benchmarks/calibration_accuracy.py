"""Accuracy per mask of each precision, side by side in one run, on the CPU with fusions off.

Usage (after 'edgemoe calibrate BUNDLE --data DIR'):

    PYTHONPATH=. python benchmarks/calibration_accuracy.py --bundle runs/bundle --data runs/data \
        --name default --out benchmarks/results/calibration_accuracy.md

Columns: fp32; fp16 everywhere; int8 everywhere and the automatic per-stage choice (both
routing-aware); int8 everywhere calibrated naively (full-sensor frames, random tokens to every
expert); and the experts alone as int8 under either calibration, which isolates what routing
awareness changes. The naive bundle is a calibrated copy under benchmarks/out/ (git-ignored).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgemoe.calibrate.collect import collect_routing_aware
from edgemoe.calibrate.pipeline import calibrate_bundle
from edgemoe.calibrate.recipe import load_recipe
from edgemoe.calibrate.variants import VariantEngines
from edgemoe.core.bundle import read_model_manifest
from edgemoe.core.manifest import ModelManifest
from edgemoe.core.engine import run_engine
from edgemoe.core.mask import mask_label
from edgemoe.data.dataset import load_dataset
from edgemoe.train.evaluate import EvalTable, evaluate_masks


def naive_copy(bundle: Path, data: Path, recipe: str | None, out: Path) -> Path:
    target = out / f"{bundle.name}.naive"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle, target)
    calibrate_bundle(target, data, load_recipe(recipe).with_overrides({"method": "naive"}))
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle calibrated routing-aware")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--name", default="default")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()

    manifest = read_model_manifest(args.bundle)
    config = manifest.config
    split = load_dataset(args.data, config, (args.split,))[args.split]
    naive = naive_copy(args.bundle, args.data, args.recipe, args.work)
    aware = VariantEngines(args.bundle, manifest, 64)
    blind = VariantEngines(naive, read_model_manifest(naive), 64)
    stages = list(manifest.stages)
    experts = [s for s in stages if s.startswith("expert[")]
    auto = {s: e.precision.choice for s, e in manifest.stages.items()}
    runs: dict[str, tuple[VariantEngines, dict[str, str]]] = {
        "fp32": (aware, {}),
        "fp16": (aware, dict.fromkeys(stages, "fp16")),
        "int8 auto": (aware, auto),
        "int8 all": (aware, dict.fromkeys(stages, "int8")),
        "int8 all, naive": (blind, dict.fromkeys(stages, "int8")),
        "int8 experts": (aware, dict.fromkeys(experts, "int8")),
        "int8 experts, naive": (blind, dict.fromkeys(experts, "int8")),
    }
    tables: dict[str, EvalTable] = {}
    probs: dict[str, dict[int, np.ndarray]] = {}
    for label, (variants, assignment) in runs.items():
        tables[label], probs[label] = scored(variants.predictor(assignment), split, config, args.split)
        print(f"{label:<22} mean acc {tables[label].mean['accuracy']:.4f}")
    fidelity = {label: agreement(probs["fp32"], p) for label, p in probs.items()}
    stage_error = expert_errors(aware, blind, split, load_recipe(args.recipe))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(args, manifest, tables, auto) + render_fidelity(fidelity, stage_error))
    print(f"wrote {args.out}")
    return 0


def scored(predict, split, config, name: str) -> tuple[EvalTable, dict[int, np.ndarray]]:
    """The per-mask table plus the probabilities behind it (for agreement with fp32)."""
    seen: dict[int, np.ndarray] = {}

    def keep(frames, mask):
        seen[mask] = predict(frames, mask)
        return seen[mask]

    return evaluate_masks(keep, split, config, name), seen


def agreement(reference: dict[int, np.ndarray], probs: dict[int, np.ndarray]) -> tuple[float, float]:
    """Percent of (sample, mask) predictions whose class differs from fp32; mean L1 prob change."""
    flips = np.concatenate([reference[m].argmax(1) != probs[m].argmax(1) for m in reference])
    l1 = np.concatenate([np.abs(reference[m] - probs[m]).sum(1) for m in reference])
    return 100 * float(flips.mean()), float(l1.mean())


def expert_errors(aware: VariantEngines, blind: VariantEngines, split, recipe) -> dict[str, tuple[float, float, int]]:
    """Relative output error of each INT8 expert (routing-aware vs naive calibration) on held-out
    tokens routed to it as deployed: frames of the evaluation split, sensors dropped per recipe."""
    held_out = recipe.with_overrides({"seed": recipe.seed + 1, "samples_per_stage": 2048, "min_samples": 1})
    sets, _ = collect_routing_aware(aware, split, held_out)
    errors = {}
    for stage in [s for s in sets if s.startswith("expert[")]:
        tokens = sets[stage]["tokens"]
        out = {}
        for label, variants, precision in (("fp32", aware, "fp32"), ("aware", aware, "int8"), ("naive", blind, "int8")):
            engine = variants.engine(stage, precision)
            out[label] = np.concatenate([run_engine(engine, {"tokens": tokens[lo:lo + 64]})["delta"]
                                         for lo in range(0, len(tokens), 64)])
        norm = np.linalg.norm(out["fp32"])
        errors[stage] = (float(np.linalg.norm(out["aware"] - out["fp32"]) / norm),
                         float(np.linalg.norm(out["naive"] - out["fp32"]) / norm), len(tokens))
    return errors


def render_fidelity(fidelity: dict[str, tuple[float, float]], errors: dict[str, tuple[float, float, int]]) -> str:
    lines = ["", "## Agreement with fp32 (all test samples under all masks)", "",
             "| variant | predictions that change class (%) | mean L1 change of the probabilities |", "|---|---:|---:|"]
    lines += [f"| {k} | {f:.3f} | {l1:.5f} |" for k, (f, l1) in fidelity.items() if k != "fp32"]
    lines += ["", "## INT8 expert output error on held-out routed tokens", "",
              "Relative error ‖int8 − fp32‖ / ‖fp32‖ of each expert's output, on tokens of the test split that the "
              "gate routes to it with sensors dropped per the recipe (not the calibration tokens).", "",
              "| expert | tokens | routing-aware | naive | naive / aware |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {s} | {n} | {a:.4f} | {b:.4f} | {b / a:.2f}x |" for s, (a, b, n) in errors.items()]
    return "\n".join(lines) + "\n"


def render(args: argparse.Namespace, manifest: ModelManifest, tables: dict[str, EvalTable], auto: dict[str, str]) -> str:
    ref = tables["fp32"]
    names = manifest.layout.sensors
    calibration = manifest.calibration
    assert calibration is not None, "a calibrated bundle"
    labels = list(tables)
    lines = [f"# Accuracy per mask by precision: {args.name} model, '{args.split}' split",
             "",
             "ONNX Runtime CPU, graph optimisations off (the Q/DQ graphs run as simulated quantization).",
             "Accuracy in percent; the Δ columns are points versus fp32 (negative = lost).",
             f"Model: {manifest.config.model.method}, gate {manifest.config.model.gate}; "
             f"calibration sets {calibration.sets.content_sha256[:12]} "
             f"({calibration.method}, recipe '{calibration.recipe['name']}').",
             "",
             "Automatic precision per stage: " + ", ".join(f"`{s}` {p}" for s, p in auto.items()) + ".",
             "",
             "| mask | sensors | n | " + " | ".join(labels) + " | " + " | ".join(f"Δ {x}" for x in labels[1:]) + " |",
             "|---:|---|---:|" + "---:|" * (2 * len(labels) - 1)]
    for row in ref.rows:
        accs = [100 * t.accuracy_of(row.mask) for t in tables.values()]
        deltas = [a - accs[0] for a in accs[1:]]
        lines.append(f"| {row.mask} | {mask_label(row.mask, names)} | {row.n} | "
                     + " | ".join(f"{a:.2f}" for a in accs) + " | " + " | ".join(f"{d:+.2f}" for d in deltas) + " |")
    means = [100 * t.mean["accuracy"] for t in tables.values()]
    worst = [min(100 * (t.accuracy_of(r.mask) - ref.accuracy_of(r.mask)) for r in ref.rows) for t in tables.values()]
    lines.append("| mean | all masks | | " + " | ".join(f"{m:.2f}" for m in means) + " | "
                 + " | ".join(f"{m - means[0]:+.2f}" for m in means[1:]) + " |")
    lines.append("| worst Δ | | | " + " | ".join("" for _ in means) + " | "
                 + " | ".join(f"{w:+.2f}" for w in worst[1:]) + " |")
    lines += ["", "## Bars", ""]
    d_auto, w_auto = means[2] - means[0], worst[2]
    w16 = worst[1]
    lines.append(f"- INT8 auto: mean {d_auto:+.2f} points (bar: within 0.5) -> {'met' if round(d_auto, 6) >= -0.5 else 'NOT met'}; "
                 f"worst mask {w_auto:+.2f} (bar: within 1.5) -> {'met' if round(w_auto, 6) >= -1.5 else 'NOT met'}.")
    lines.append(f"- FP16 everywhere: worst mask {w16:+.2f} points (bar: within 0.1 on every mask) -> "
                 f"{'met' if round(w16, 6) >= -0.1 else 'NOT met'}.")
    lines.append(f"- Routing-aware vs naive calibration, int8 everywhere: mean {means[3] - means[0]:+.2f} vs "
                 f"{means[4] - means[0]:+.2f}, worst {worst[3]:+.2f} vs {worst[4]:+.2f}; experts only: mean "
                 f"{means[5] - means[0]:+.2f} vs {means[6] - means[0]:+.2f}, worst {worst[5]:+.2f} vs {worst[6]:+.2f}.")
    agree = {label: float(np.mean([abs(100 * (t.accuracy_of(r.mask) - ref.accuracy_of(r.mask))) for r in ref.rows]))
             for label, t in tables.items()}
    lines.append("- Mean absolute per-mask change: " + ", ".join(f"{k} {v:.2f}" for k, v in agree.items() if k != "fp32")
                 + " points.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
