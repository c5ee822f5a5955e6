"""Per-mask dedicated models: the upper reference, one small sparse MoE per sensor mask.

A dedicated model for mask ``c`` is an ordinary ``smoe`` model over the sub-schema of ``c``'s
sensors (same model size), trained on every training sample that recorded them, with no sensor
dropout, and selected on its own (full) mask. Each exports as its own small bundle: deployment of
the reference is "one bundle per mask" (2^M - 1 bundles), which is exactly what the single
missing-sensor-robust model avoids.
"""

from __future__ import annotations

import numpy as np

from edgemoe.core.mask import bits_to_masks, full_mask, mask_label, mask_names, masks_to_bits
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split


def dedicated_config(config: ModelConfig, mask: int) -> ModelConfig:
    """The sub-schema of ``mask``'s sensors (bit order kept), trained without sensor dropout."""
    names = mask_names(mask, config.sensor_names)
    return config.model_copy(update={
        "name": f"{config.name}-{mask_label(mask, config.sensor_names)}",
        "sensors": tuple(config.sensor(n) for n in names),
        "model": config.model.model_copy(update={"method": "smoe"}),
        "training": config.training.model_copy(update={"sensor_dropout": 0.0}),
    })


def project_split(split: Split, config: ModelConfig, mask: int) -> Split:
    """Samples that recorded every sensor of ``mask``, with only those frames (sub-schema bits)."""
    names = mask_names(mask, config.sensor_names)
    recorded = split.recorded(config.num_sensors)
    keep = np.flatnonzero(recorded & mask == mask)
    part = split.subset(keep) if keep.size != len(split) else split
    sub_mask = None
    if split.mask is not None:
        columns = [config.sensor_names.index(n) for n in names]
        sub_mask = bits_to_masks(masks_to_bits(part.recorded(config.num_sensors), config.num_sensors)[:, columns])
    return Split({n: part.frames[n] for n in names}, part.label, sub_mask)


def own_mask(config: ModelConfig) -> list[int]:
    """A dedicated model is selected on its full mask only."""
    return [full_mask(config.num_sensors)]
