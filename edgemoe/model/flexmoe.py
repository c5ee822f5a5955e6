"""Flex-MoE-style baseline: a learnable missing-sensor bank and combination-pulling routing.

A missing sensor ``m`` under combination ``c`` is filled with learned tokens ``bank[c, m]`` (one
filler per combination and missing sensor), shipped in the bundle as ``constants['m@c']``, so the
runtime fills it with a table lookup (``constant`` filler). The router is pulled toward one expert
per combination (``c mod N``) by a small cross-entropy on each sample's mean gate logits, on top
of the usual load balancing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.core.mask import all_masks, full_mask
from edgemoe.core.schema import ModelConfig
from edgemoe.model.smoe import ModelOutput, SparseMoE

PULL_WEIGHT = 0.01


def presence_to_masks(present: torch.Tensor) -> torch.Tensor:
    """``[B, M]`` bool -> ``[B]`` int masks (bit m = sensor m), the core's bit order."""
    weights = 1 << torch.arange(present.shape[1], device=present.device)
    return (present.long() * weights).sum(1)


class FlexMoE(SparseMoE):
    filler = "constant"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        m, s, d = config.num_sensors, config.model.tokens_per_sensor, config.model.dim
        self.bank = nn.Parameter(torch.randn(full_mask(m) + 1, m, s, d) * 0.02)

    def encode(self, frames: dict[str, torch.Tensor], present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.config.model.tokens_per_sensor
        tokens = torch.cat([self.encoders[name](frames[name]) for name in self.config.sensor_names], 1)
        fill = self.bank[presence_to_masks(present)].flatten(1, 2)  # [B, M*S, D]
        keep = present.repeat_interleave(s, dim=1).unsqueeze(-1)
        return torch.where(keep, tokens, fill), torch.ones(tokens.shape[:2], dtype=torch.bool)

    def forward(self, frames: dict[str, torch.Tensor], present: torch.Tensor) -> ModelOutput:
        tokens, token_mask = self.encode(frames, present)
        mixed, chosen, aux = self.mix(tokens, token_mask)
        if self.training:
            aux = aux + PULL_WEIGHT * self._pull(tokens, present)
        return ModelOutput(self.head(mixed.mean(1)), aux, chosen, token_mask)

    def _pull(self, tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each sample's mean gate logits toward its combination's expert."""
        logits = self.gate(tokens.flatten(0, 1)).reshape(*tokens.shape[:2], -1).mean(1)
        return F.cross_entropy(logits, presence_to_masks(present) % self.config.model.num_experts)

    def constants(self) -> dict[str, np.ndarray]:
        """``sensor@mask`` -> ``[S, D]`` learned filler, for every mask that misses the sensor."""
        bank = self.bank.detach().cpu().numpy()
        names = self.config.sensor_names
        return {f"{name}@{c}": bank[c, i] for c in all_masks(len(names))
                for i, name in enumerate(names) if not c >> i & 1}
