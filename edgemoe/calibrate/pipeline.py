"""``edgemoe calibrate``: a model bundle gains INT8 and FP16 variants and a precision per stage.

All of it happens in a staged copy of the bundle that replaces the original only when every set
was accepted, every INT8 graph passed the Q/DQ validator and the manifest is written; a failure
leaves the bundle exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edgemoe.calibrate.collect import COLLECTORS, CollectionReport
from edgemoe.calibrate.dynamic import DYNAMIC, quantize_dynamic_stage
from edgemoe.calibrate.fp16 import convert_stage
from edgemoe.calibrate.fused import choose_fused_precision, fused_set
from edgemoe.calibrate.int8 import READER_CHUNK, quantization_record, quantize_stage
from edgemoe.calibrate.precision import AutoPrecision, Cost, choose_precisions, cost
from edgemoe.calibrate.recipe import CalibrationRecipe
from edgemoe.calibrate.sets import (
    CalibrationSets,
    check_stage_set,
    content_sha256,
    save_sets,
)
from edgemoe.calibrate.variants import REEXPORT, VariantEngines
from edgemoe.core.bundle import read_model_manifest, sha256_file, staged_directory, verify_file, write_manifest
from edgemoe.core.manifest import (
    CalibrationSets as SetsRef, CalibrationSummary, FusedEntry, ModelManifest, PrecisionChoice, StageEntry, Variant,
)
from edgemoe.core.signing import SIGNATURE
from edgemoe.core.stages import stage_file_stem
from edgemoe.data.dataset import Split, load_dataset
from edgemoe.train.evaluate import EvalTable, evaluate_masks

SETS_DIR = "calibration"
Entry = TypeVar("Entry", bound=StageEntry)  # a stage's or a fused graph's entry


@dataclass
class CalibrationResult:
    manifest: ModelManifest
    sets_sha256: str
    report: CollectionReport | None
    auto: AutoPrecision


def calibrate_bundle(bundle: Path, data: Path, recipe: CalibrationRecipe, sets: CalibrationSets | None = None,
                     log: Callable[[str], None] = lambda line: None) -> CalibrationResult:
    """Collect (or take) calibration sets, write INT8/FP16 variants, choose precisions.

    The manifest changes, so a signature the bundle had no longer holds: it is removed, and the
    calibrated bundle must be signed again (``edgemoe sign``)."""
    bundle = Path(bundle)
    manifest = read_model_manifest(bundle)
    config, layout = manifest.config, manifest.layout
    for stage in layout.stage_names():
        verify_file(bundle, manifest.stages[stage].variants["fp32"], f"stage '{stage}' (fp32)", REEXPORT)
    splits = load_dataset(Path(data), config, tuple(dict.fromkeys((recipe.split, recipe.validation_split))))
    with staged_directory(bundle, overwrite=True) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
        (tmp / SIGNATURE).unlink(missing_ok=True)
        variants = VariantEngines(tmp, manifest, recipe.batch)
        report = None
        if sets is None:
            log(f"collecting calibration sets ({recipe.method}) from split '{recipe.split}'")
            sets, report = COLLECTORS[recipe.method](variants, splits[recipe.split], recipe)
        for stage in layout.stage_names():
            check_stage_set(stage, sets.get(stage), manifest.stages[stage].inputs, recipe.min_samples)
        sets = {stage: sets[stage] for stage in layout.stage_names()}
        sets_file = f"{SETS_DIR}/sets.{recipe.method}.npz"
        digest = save_sets(sets, tmp / sets_file)
        log(f"calibration sets {digest[:12]}… -> {sets_file}")
        stages = {stage: _write_variants(tmp, manifest.stages[stage], stage, sets[stage], recipe,
                                         config.model.gate, log)
                  for stage in layout.stage_names()}
        log(f"sensitivity per stage on split '{recipe.validation_split}' (ONNX Runtime, fusions off)")
        val = splits[recipe.validation_split]
        variants.close()  # the collection's engines; the scoring ones see the new variants
        variants = VariantEngines(tmp, manifest.model_copy(update={"stages": stages}), recipe.batch)

        def score(assignment: Mapping[str, str]) -> EvalTable:
            return evaluate_masks(variants.predictor(assignment), val, config, recipe.validation_split)

        auto = choose_precisions(layout.stage_names(), score, recipe.budgets, log)
        dynamic = score(dict.fromkeys(layout.stage_names(), DYNAMIC))
        dynamic_cost = cost(auto.reference, dynamic)
        log(f"  every stage {DYNAMIC} costs {dynamic_cost.mean:+.2f} mean, {dynamic_cost.worst:+.2f} worst-mask points")
        variants.close()
        for stage, choice in auto.choices.items():
            precision = PrecisionChoice(choice=choice.choice, reason=choice.reason, evidence=choice.evidence,
                                        calibration={"method": recipe.method,
                                                     "set_sha256": content_sha256(sets[stage])})
            stages[stage] = stages[stage].model_copy(update={"precision": precision})
        fused = _calibrate_fused(tmp, manifest.model_copy(update={"stages": stages}), splits[recipe.split], val,
                                 recipe, log)
        manifest = manifest.model_copy(update={"stages": stages, "fused": fused,
                                               "calibration": _summary(recipe, sets_file, tmp, digest, report, auto,
                                                                       dynamic, dynamic_cost)})
        write_manifest(tmp, manifest)
    return CalibrationResult(manifest, digest, report, auto)


def _write_variants(directory: Path, entry: Entry, stage: str, stage_set: dict, recipe: CalibrationRecipe,
                    gate_family: str, log: Callable[[str], None], chunk: int = READER_CHUNK) -> Entry:
    """Write the stage's INT8, FP16 and INT8-dynamic graphs beside its fp32 one; return its entry
    with the three variants added."""
    fp32 = entry.variants["fp32"].file
    source = directory / fp32
    stem = f"{fp32.rsplit('/', 1)[0]}/{stage_file_stem(stage)}"
    int8_rel, fp16_rel, dyn_rel = f"{stem}.int8.onnx", f"{stem}.fp16.onnx", f"{stem}.{DYNAMIC}.onnx"
    summary = quantize_stage(stage, source, stage_set, directory / int8_rel, recipe.activation_calibration, chunk)
    fp16 = convert_stage(stage, source, directory / fp16_rel, gate_family)
    dynamic = quantize_dynamic_stage(stage, source, directory / dyn_rel, recipe.dynamic_min_weight_kib)
    rows = len(next(iter(stage_set.values())))
    int8 = Variant(file=int8_rel, sha256=sha256_file(directory / int8_rel), calibration={
        "method": recipe.method, "set_sha256": content_sha256(stage_set), "samples": rows,
        **quantization_record(recipe.activation_calibration),
        "qdq": {"quantize": summary.quantize, "dequantize": summary.dequantize,
                "per_channel_weights": summary.per_channel_weights, "validated": True}})
    half = Variant(file=fp16_rel, sha256=sha256_file(directory / fp16_rel), calibration=fp16)
    dyn = Variant(file=dyn_rel, sha256=sha256_file(directory / dyn_rel), calibration=dynamic)
    log(f"  {stage:<18} int8 ({rows} samples, {summary.quantize} Q / {summary.dequantize} DQ) + fp16 + "
        f"{DYNAMIC} ({dynamic['quantized']} products)")
    return entry.model_copy(update={"variants": {**entry.variants, "int8": int8, "fp16": half, DYNAMIC: dyn}})


def _calibrate_fused(directory: Path, manifest: ModelManifest, calib: Split, val: Split, recipe: CalibrationRecipe,
                     log: Callable[[str], None]) -> dict[int, FusedEntry]:
    """Each fused graph's INT8 and FP16 variants (frames as the set, one per call) and precision."""
    if not manifest.fused:
        return {}
    config = manifest.config
    log(f"fused graphs: variants from split '{recipe.split}', precision on '{recipe.validation_split}' per mask")
    frames = {mask: fused_set(calib, config, mask, recipe, entry.stage) for mask, entry in manifest.fused.items()}
    fused = {mask: _write_variants(directory, entry, entry.stage, frames[mask], recipe, config.model.gate, log, chunk=1)
             for mask, entry in manifest.fused.items()}
    variants = VariantEngines(directory, manifest.model_copy(update={"fused": fused}), recipe.batch)
    try:
        return {mask: entry.model_copy(update={"precision": choose_fused_precision(
                    mask, entry, variants, val, config, recipe.budgets, frames[mask], log)})
                for mask, entry in fused.items()}
    finally:
        variants.close()


def _summary(recipe: CalibrationRecipe, sets_file: str, directory: Path, digest: str,
             report: CollectionReport | None, auto: AutoPrecision, dynamic: EvalTable,
             dynamic_cost: Cost) -> CalibrationSummary:
    """What calibration measured; ``dynamic`` is every stage at int8-dynamic (what ``build
    --precision int8-dynamic`` deploys), scored like the auto assignment, and ``dynamic_cost`` its
    drop from fp32."""
    ref, fin, c = auto.reference, auto.final, auto.final_cost
    return CalibrationSummary(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        method=recipe.method,
        recipe=recipe.model_dump(mode="json"),
        sets=SetsRef(file=sets_file, sha256=sha256_file(directory / sets_file), content_sha256=digest),
        collection=report.to_dict() if report else {"method": "provided"},
        validation={
            "split": ref.split,
            "fp32": {str(r.mask): r.accuracy for r in ref.rows},
            "auto": {str(r.mask): r.accuracy for r in fin.rows},
            "fp32_mean": ref.mean["accuracy"], "auto_mean": fin.mean["accuracy"],
            "auto_cost": c.to_dict(), "demoted": auto.demoted,
            "int8_dynamic": {str(r.mask): r.accuracy for r in dynamic.rows},
            "int8_dynamic_mean": dynamic.mean["accuracy"], "int8_dynamic_cost": dynamic_cost.to_dict(),
        },
    )
