"""INT8, FP16 and INT8-dynamic variants of the fused per-mask graphs, and the precision of each.

A fused graph is one mask's whole forward at batch 1 with the sensors' frames as its inputs, so
its calibration set is frames: samples of the calibration split that recorded every sensor of the
mask (a seeded draw of up to ``samples_per_stage``), fed one at a time. Its variants are made by
the same quantizer, Q/DQ validator and FP16 converter as the stages'.

Its precision is judged the way its mask is: each variant's accuracy on the validation samples of
that mask, one frame at a time through the fused engine, against its fp32 graph. A fused engine is
the whole model for its mask, so it takes the whole model's budget on one mask: int8 if int8 costs
at most ``int8_worst`` points, else fp16 if fp16 costs at most ``fp16_worst``, else fp32.
int8-dynamic is measured too (in the evidence) but never chosen: it is what a CPU target asks for
by name (``build --precision int8-dynamic``), and TensorRT does not build it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from edgemoe.calibrate.dynamic import DYNAMIC
from edgemoe.calibrate.recipe import Budgets, CalibrationRecipe
from edgemoe.calibrate.sets import CalibrationError, content_sha256
from edgemoe.calibrate.variants import VariantEngines
from edgemoe.core.manifest import FusedEntry, PrecisionChoice
from edgemoe.core.mask import Mask, mask_names
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split
from edgemoe.train.evaluate import evaluate_masks


def fused_set(split: Split, config: ModelConfig, mask: Mask, recipe: CalibrationRecipe,
              stage: str) -> dict[str, np.ndarray]:
    """``{sensor: [n, *shape]}`` frames of the samples that recorded every sensor of ``mask``."""
    recorded = np.flatnonzero(split.recorded(config.num_sensors) & mask == mask)
    if recorded.size < recipe.min_samples:
        raise CalibrationError(f"stage '{stage}': {recorded.size} samples of split '{recipe.split}' recorded "
                               f"every sensor of the mask, fewer than min_samples={recipe.min_samples}")
    rng = np.random.default_rng(recipe.seed + mask)
    rows = np.sort(rng.choice(recorded, min(recipe.samples_per_stage, recorded.size), replace=False))
    return {name: np.ascontiguousarray(split.frames[name][rows]) for name in mask_names(mask, config.sensor_names)}


def choose_fused_precision(mask: Mask, entry: FusedEntry, variants: VariantEngines, val: Split,
                           config: ModelConfig, budgets: Budgets, frames: Mapping[str, np.ndarray],
                           log: Callable[[str], None] = lambda line: None) -> PrecisionChoice:
    """Measure each variant on the mask's validation samples and take the cheapest within budget."""
    accuracy = {}
    for precision in ("fp32", "int8", "fp16", DYNAMIC):
        table = evaluate_masks(variants.fused_predictor(mask, precision), val, config, "val", masks=[mask])
        if not table.rows:
            raise CalibrationError(f"stage '{entry.stage}': no sample of the validation split recorded its sensors")
        accuracy[precision] = table.rows[0].accuracy
    drop = {p: round(100.0 * (accuracy["fp32"] - a), 4) for p, a in accuracy.items() if p != "fp32"}
    evidence = {"accuracy": {p: round(a, 6) for p, a in accuracy.items()}, "drop_points": drop,
                "samples": table.rows[0].n}
    log(f"  {entry.stage:<18} int8 costs {drop['int8']:+.2f}, fp16 {drop['fp16']:+.2f}, {DYNAMIC} "
        f"{drop[DYNAMIC]:+.2f} points on its mask")
    calibration = {"method": "frames", "set_sha256": content_sha256(dict(frames))}
    if drop["int8"] <= budgets.int8_worst:
        return PrecisionChoice(choice="int8", reason=f"int8 costs {drop['int8']:.2f} points on its mask, within the "
                               f"model's {budgets.int8_worst}", evidence=evidence, calibration=calibration)
    if drop["fp16"] <= budgets.fp16_worst:
        return PrecisionChoice(choice="fp16", reason=f"int8 costs {drop['int8']:.2f} points, over "
                               f"{budgets.int8_worst}; fp16 {drop['fp16']:.2f}, within {budgets.fp16_worst}",
                               evidence=evidence, calibration=calibration)
    return PrecisionChoice(choice="fp32", reason=f"int8 costs {drop['int8']:.2f} and fp16 {drop['fp16']:.2f} points "
                           f"on its mask, over {budgets.int8_worst} / {budgets.fp16_worst}",
                           evidence=evidence, calibration=calibration)
