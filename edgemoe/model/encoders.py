"""Per-sensor encoders: a raw frame ``[B, *shape]`` -> tokens ``[B, S, D]``.

The architecture follows the sensor kind; the registry maps kind -> module so a new kind is one
entry, not an if/else chain. Every encoder ends with a learned sensor embedding and LayerNorm so
tokens of different sensors live on one scale before routing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgemoe.core.schema import SensorKind, SensorSpec


def _conv2d_trunk(channels: int, height: int, width: int) -> tuple[nn.Module, int]:
    trunk = nn.Sequential(
        nn.Conv2d(channels, 16, 3, stride=2, padding=1), nn.GELU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.GELU(),
        nn.Flatten(1),
    )
    return trunk, 32 * ((height + 3) // 4) * ((width + 3) // 4)


def _conv1d_trunk(channels: int, length: int) -> tuple[nn.Module, int]:
    trunk = nn.Sequential(
        nn.Conv1d(channels, 16, 5, stride=2, padding=2), nn.GELU(),
        nn.Conv1d(16, 32, 5, stride=2, padding=2), nn.GELU(),
        nn.Flatten(1),
    )
    return trunk, 32 * ((length + 3) // 4)


def _mlp_trunk(features: int) -> tuple[nn.Module, int]:
    return nn.Sequential(nn.Linear(features, 64), nn.GELU()), 64


TRUNKS: dict[SensorKind, Callable[..., tuple[nn.Module, int]]] = {
    SensorKind.image: _conv2d_trunk,
    SensorKind.scan: _conv1d_trunk,
    SensorKind.imu: _conv1d_trunk,
    SensorKind.vector: _mlp_trunk,
}


class SensorEncoder(nn.Module):
    """Trunk by kind, then a linear map to ``S`` tokens of width ``D``."""

    def __init__(self, spec: SensorSpec, tokens: int, dim: int) -> None:
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.trunk, width = TRUNKS[spec.kind](*spec.shape)
        self.project = nn.Linear(width, tokens * dim)
        self.embedding = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        tokens = self.project(self.trunk(frame)).reshape(-1, self.tokens, self.dim)
        return self.norm(tokens + self.embedding)
