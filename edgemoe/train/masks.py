"""Which sensor combination each training sample is shown under: the mask-sampling rules.

How often a combination is trained decides how well it is served. With the classic sensor
dropout at 0.5 over four sensors the full mask gets ~53% of the samples and each of the other
fourteen ~3%, while a per-mask dedicated model gets all of its own. The rule is therefore a
configuration choice (``training.mask_sampling``), every rule stays within what each sample
recorded, and no rule ever yields an empty mask:

- ``dropout``: the full recorded mask with probability ``1 - sensor_dropout``, else a uniformly
  drawn non-empty mask intersected with it;
- ``uniform``: uniform over the non-empty subsets of what the sample recorded;
- ``availability``: each sensor kept independently with probability ``1 - sensor_dropout``
  (a fleet's per-sensor availability), redrawn until non-empty;
- ``random_rate``: the random-rate pattern of the missing-modality literature: drop
  ``floor(B*M*sensor_dropout)`` recorded cells uniformly, keeping one sensor per sample.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from edgemoe.core.mask import bits_to_masks, full_mask, masks_to_bits
from edgemoe.data.loader import MaskSampler

MaskSampling = Literal["dropout", "uniform", "availability", "random_rate"]


def sample_masks(recorded: np.ndarray, dropout: float, num_sensors: int, rng: np.random.Generator) -> np.ndarray:
    """``dropout``: full with prob ``1 - dropout``, else uniform over non-empty masks, always
    within what the sample recorded and never empty."""
    n = recorded.shape[0]
    drawn = rng.integers(1, full_mask(num_sensors) + 1, n)
    masks = np.where(rng.random(n) < dropout, drawn, full_mask(num_sensors)) & recorded
    return np.where(masks == 0, recorded, masks)


def uniform_subsets(recorded: np.ndarray, num_sensors: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn non-empty subset of each sample's recorded mask."""
    candidates = np.arange(1, full_mask(num_sensors) + 1)
    allowed = (candidates[None, :] & ~recorded[:, None]) == 0  # [N, 2^M - 1]
    keys = np.where(allowed, rng.random(allowed.shape), -1.0)
    return candidates[np.argmax(keys, axis=1)]


def availability(recorded: np.ndarray, keep: float, num_sensors: int, rng: np.random.Generator) -> np.ndarray:
    """Each recorded sensor kept with probability ``keep``; empty draws are drawn again."""
    masks = np.zeros_like(recorded)
    todo = np.arange(recorded.shape[0])
    while todo.size:
        bits = rng.random((todo.size, num_sensors)) < keep
        masks[todo] = bits_to_masks(bits) & recorded[todo]
        todo = todo[masks[todo] == 0]
    return masks


def drop_cells(recorded: np.ndarray, rate: float, num_sensors: int, rng: np.random.Generator) -> np.ndarray:
    """The random-rate missing pattern: drop ``floor(B*M*rate)`` recorded (sample, sensor) cells,
    chosen uniformly, always keeping at least one sensor per sample."""
    bits = masks_to_bits(recorded, num_sensors)
    n = bits.shape[0]
    keys = rng.random(bits.shape)
    protected = np.zeros_like(bits)
    protected[np.arange(n), np.argmax(np.where(bits, keys, -1.0), axis=1)] = True
    droppable = np.flatnonzero((bits & ~protected).reshape(-1))
    count = min(int(n * num_sensors * rate), droppable.size)
    flat = bits.reshape(-1).copy()
    flat[rng.choice(droppable, count, replace=False)] = False
    return bits_to_masks(flat.reshape(bits.shape))


def mask_sampler(rule: MaskSampling, dropout: float, num_sensors: int) -> MaskSampler:
    """``(recorded, rng) -> masks`` for a configured rule."""
    samplers: dict[str, MaskSampler] = {
        "dropout": lambda rec, rng: sample_masks(rec, dropout, num_sensors, rng),
        "uniform": lambda rec, rng: uniform_subsets(rec, num_sensors, rng),
        "availability": lambda rec, rng: availability(rec, 1.0 - dropout, num_sensors, rng),
        "random_rate": lambda rec, rng: drop_cells(rec, dropout, num_sensors, rng),
    }
    return samplers[rule]
