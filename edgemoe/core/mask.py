"""Sensor-availability masks: the one place that knows the bit order.

A mask is an int whose bit ``i`` is set when ``schema.sensors[i]`` is present. Everything that
turns sensor names into masks and back goes through these functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edgemoe.core.errors import ConfigError

Mask = int


def full_mask(num_sensors: int) -> Mask:
    return (1 << num_sensors) - 1


def all_masks(num_sensors: int) -> list[Mask]:
    """Every non-empty mask, 1 .. 2^M - 1, in increasing order."""
    return list(range(1, full_mask(num_sensors) + 1))


def is_present(mask: Mask, sensor: int) -> bool:
    """Whether sensor index ``sensor`` is present in ``mask``."""
    return bool(mask >> sensor & 1)


def present_count(mask: Mask) -> int:
    """How many sensors ``mask`` has."""
    return mask.bit_count()


def present(mask: Mask, num_sensors: int) -> list[int]:
    """Indices of present sensors, in bit order."""
    return [i for i in range(num_sensors) if is_present(mask, i)]


def absent(mask: Mask, num_sensors: int) -> list[int]:
    """Indices of missing sensors, in bit order."""
    return [i for i in range(num_sensors) if not is_present(mask, i)]


def mask_of(indices: Iterable[int]) -> Mask:
    """The mask with exactly the sensors ``indices`` present."""
    mask = 0
    for i in indices:
        mask |= 1 << i
    return mask


def mask_from_names(names: Iterable[str], sensor_names: Sequence[str]) -> Mask:
    names = list(names)
    unknown = [name for name in names if name not in sensor_names]
    if unknown:
        raise ConfigError(f"unknown sensor '{unknown[0]}' (schema has {list(sensor_names)})")
    return mask_of(sensor_names.index(name) for name in names)


def mask_names(mask: Mask, sensor_names: Sequence[str]) -> list[str]:
    return [sensor_names[i] for i in present(mask, len(sensor_names))]


def mask_label(mask: Mask, sensor_names: Sequence[str]) -> str:
    """Human label used in tables and logs: ``camera+imu``."""
    return "+".join(mask_names(mask, sensor_names)) or "(none)"


def parse_mask(text: str, sensor_names: Sequence[str]) -> Mask:
    """Accept ``camera+imu``, ``0b0101`` or ``5``."""
    text = text.strip()
    try:
        value = int(text, 0)
    except ValueError:
        return mask_from_names([t for t in text.replace(",", "+").split("+") if t], sensor_names)
    if not 0 < value <= full_mask(len(sensor_names)):
        raise ConfigError(f"mask {text} out of range 1..{full_mask(len(sensor_names))}")
    return value


def parse_mask_selection(values: Iterable[str], sensor_names: Sequence[str]) -> list[Mask]:
    """``--fuse`` style selections: ``all``, masks as for :func:`parse_mask`, or the path of a
    ``*.json`` choice file (``{"masks": [...]}``: the ``fused_choice.json`` that ``edgemoe profile`` writes)."""
    chosen: set[Mask] = set()
    for value in values:
        if value == "all":
            chosen.update(all_masks(len(sensor_names)))
        elif value.endswith(".json"):
            chosen.update(_read_choice(value, sensor_names))
        else:
            chosen.add(parse_mask(value, sensor_names))
    return sorted(chosen)


def _read_choice(path: str, sensor_names: Sequence[str]) -> list[Mask]:
    try:
        masks = json.loads(Path(path).read_text())["masks"]
        return [parse_mask(str(m), sensor_names) for m in masks]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a mask choice file (want {{\"masks\": [...]}}): {exc}") from None


def masks_to_bits(masks: np.ndarray, num_sensors: int) -> np.ndarray:
    """[B] int masks -> [B, M] bool presence matrix."""
    bits = np.arange(num_sensors)
    return (np.asarray(masks, dtype=np.int64)[:, None] >> bits & 1).astype(bool)


def bits_to_masks(bits: np.ndarray) -> np.ndarray:
    """[B, M] presence matrix -> [B] int masks."""
    weights = 1 << np.arange(bits.shape[1], dtype=np.int64)
    return (np.asarray(bits, dtype=np.int64) * weights).sum(axis=1)

