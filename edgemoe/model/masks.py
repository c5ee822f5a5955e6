"""Sensor masks as torch tensors, in the bit order of :mod:`edgemoe.core.mask` (bit m = sensor m)."""

from __future__ import annotations

import torch


def presence_to_masks(present: torch.Tensor) -> torch.Tensor:
    """``[B, M]`` bool -> ``[B]`` int masks."""
    weights = 1 << torch.arange(present.shape[1], device=present.device)
    return (present.long() * weights).sum(1)


def masks_to_presence(masks: torch.Tensor, num_sensors: int) -> torch.Tensor:
    """``[B]`` int masks -> ``[B, M]`` bool."""
    bits = torch.arange(num_sensors, device=masks.device)
    return (masks[:, None] >> bits & 1).bool()
