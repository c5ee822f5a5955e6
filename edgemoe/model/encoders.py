"""Per-sensor encoders: a raw frame ``[B, *shape]`` -> tokens ``[B, S, D]``.

The architecture follows the sensor kind; the registry maps kind -> module so a new kind is one
entry, not an if/else chain. Every encoder starts by standardising its input per channel with
statistics of the training split (:class:`Standardize`, buffers saved in the checkpoint and baked
into the exported encoder graph, so the runtime still takes raw sensor units) and ends with a
learned sensor embedding and LayerNorm so tokens of different sensors live on one scale before
routing.
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


class Standardize(nn.Module):
    """``(x - mean) / std`` per channel (the first axis of a frame). Sensors report in units that
    differ by orders of magnitude; without this, one raw scale dominates the shared trunk width
    and a learning rate suits no sensor. Identity until :meth:`fit` sets the statistics."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        stat_shape = (shape[0],) + (1,) * (len(shape) - 1)
        self.register_buffer("mean", torch.zeros(stat_shape))
        self.register_buffer("std", torch.ones(stat_shape))

    @torch.no_grad()
    def fit(self, frames: torch.Tensor) -> None:
        """Statistics of ``frames`` ``[N, *shape]`` (only recorded ones; N >= 1)."""
        axes = [0, *range(2, frames.dim())]
        data = frames.double()
        self.mean.copy_(data.mean(axes).reshape(self.mean.shape).float())
        std = data.std(axes, correction=0).reshape(self.std.shape).float()
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        return (frame - self.mean) / self.std


class SensorEncoder(nn.Module):
    """Standardisation, trunk by kind, then a linear map to ``S`` tokens of width ``D``."""

    def __init__(self, spec: SensorSpec, tokens: int, dim: int) -> None:
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.standardize = Standardize(tuple(spec.shape))
        self.trunk, width = TRUNKS[spec.kind](*spec.shape)
        self.project = nn.Linear(width, tokens * dim)
        self.embedding = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        tokens = self.project(self.trunk(self.standardize(frame))).reshape(-1, self.tokens, self.dim)
        return self.norm(tokens + self.embedding)
