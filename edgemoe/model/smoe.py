"""The sparse-MoE baseline: per-sensor encoders -> tokens -> noisy top-k gate -> experts -> head.

Missing sensors contribute no tokens: their tokens are zero-filled and excluded by the masked
mean pool, which is exactly what the runtime does by not running their encoders (``drop``
filler). The training forward computes every expert densely (small models, simple autograd); the
arithmetic per token is the executor's, so the two agree to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.core.engine import TensorSpec
from edgemoe.core.stages import GATE, HEAD, StageLayout, encoder_stage, expert_stage, stage_tensors
from edgemoe.core.schema import ModelConfig
from edgemoe.model.encoders import SensorEncoder
from edgemoe.model.gates import GATES, GateNoise, cv_squared, smooth_load, top_k_route


@dataclass
class ModelOutput:
    logits: torch.Tensor  # [B, C]
    aux_loss: torch.Tensor  # scalar, already weighted
    chosen: torch.Tensor  # [B, T, k] expert indices per token
    token_mask: torch.Tensor  # [B, T] bool, tokens that count
    # method-specific tensors that ``loss`` needs with the labels (probe inputs, second pass, ...)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class StageModule:
    """A stage as exported: the module and its named, symbolic-shaped tensors."""

    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class Expert(nn.Module):
    """``D -> hidden -> D`` MLP with GELU; its output is the residual delta."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


class Head(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, num_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(pooled))


class HeadProbs(nn.Module):
    """The exported head: probabilities, so every backend hands out the same thing."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(pooled), dim=-1)


class SparseMoE(nn.Module):
    """The baseline every other method must beat."""

    filler = "drop"
    mixing = "softmax"
    route_by = "token"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        spec = config.model
        self.encoders = nn.ModuleDict(
            {s.name: SensorEncoder(s, spec.tokens_per_sensor, spec.dim) for s in config.sensors}
        )
        self.gate = GATES[spec.gate](spec.dim, spec.num_experts)
        self.noise = GateNoise(spec.dim, spec.num_experts)
        self.experts = nn.ModuleList(Expert(spec.dim, spec.expert_hidden) for _ in range(spec.num_experts))
        self.head = Head(spec.dim, config.num_classes)

    # -- forward -------------------------------------------------------------------------------
    def encode(self, frames: dict[str, torch.Tensor], present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``[B, M*S, D]`` (missing sensors zero-filled) and the token mask ``[B, M*S]``."""
        s = self.config.model.tokens_per_sensor
        tokens = torch.cat([self.encoders[name](frames[name]) for name in self.config.sensor_names], 1)
        token_mask = present.repeat_interleave(s, dim=1)
        return tokens * token_mask.unsqueeze(-1), token_mask

    def mix(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Route every token to its top-k experts; returns mixed tokens, choices and aux loss."""
        b, t, d = tokens.shape
        flat = tokens.reshape(b * t, d)
        clean = self.gate(flat)
        k = self.config.model.top_k
        scores, scale = clean, None
        if self.training and self.config.model.noisy_gating:
            scores, scale = self.noise(flat, clean)
        index, weight = top_k_route(scores, k)
        outputs = torch.stack([expert(flat) for expert in self.experts], 0)  # [N, T, D]
        rows = torch.arange(flat.shape[0], device=flat.device)
        delta = sum(weight[:, j, None] * outputs[index[:, j], rows] for j in range(index.shape[1]))
        valid = token_mask.reshape(-1)
        aux = flat.new_zeros(())
        if self.training:
            aux = self.load_balance(clean, scores, scale, index, weight, valid)
        return (flat + delta).reshape(b, t, d), index.reshape(b, t, -1), aux

    def load_balance(self, clean: torch.Tensor, scores: torch.Tensor, scale: torch.Tensor | None,
                     index: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``w * (cv^2(importance) + cv^2(load))`` over the tokens that count."""
        gates = torch.zeros_like(scores).scatter(1, index, weight)[valid]
        importance = gates.sum(0)
        if scale is None:  # no noise: hard counts (no gradient through the load term)
            load = (gates > 0).float().sum(0)
        else:
            load = smooth_load(clean[valid], scores[valid], scale[valid], index.shape[1])
        return self.config.training.load_balance_weight * (cv_squared(importance) + cv_squared(load))

    def forward(self, frames: dict[str, torch.Tensor], present: torch.Tensor) -> ModelOutput:
        tokens, token_mask = self.encode(frames, present)
        mixed, chosen, aux = self.mix(tokens, token_mask)
        weight = token_mask.unsqueeze(-1).float()
        pooled = (mixed * weight).sum(1) / weight.sum(1).clamp_min(1.0)
        return ModelOutput(self.head(pooled), aux, chosen, token_mask)

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output.logits, labels) + output.aux_loss

    # -- stages --------------------------------------------------------------------------------
    def layout(self) -> StageLayout:
        spec = self.config.model
        return StageLayout(
            sensors=self.config.sensor_names, tokens_per_sensor=spec.tokens_per_sensor,
            dim=spec.dim, num_experts=spec.num_experts, top_k=spec.top_k,
            num_classes=self.config.num_classes, filler=self.filler, mixing=self.mixing,
            route_by=self.route_by,
        )

    def stage_modules(self) -> dict[str, StageModule]:
        """Every stage as a standalone module with named tensors, in execution order."""
        io = stage_tensors(self.layout(), {spec.name: spec.shape for spec in self.config.sensors})
        stages = {
            encoder_stage(spec.name): StageModule(self.encoders[spec.name], *io[encoder_stage(spec.name)])
            for spec in self.config.sensors
        }
        stages[GATE] = StageModule(self.gate, *io[GATE])
        for e, expert in enumerate(self.experts):
            stages[expert_stage(e)] = StageModule(expert, *io[expert_stage(e)])
        stages[HEAD] = StageModule(HeadProbs(self.head), *io[HEAD])
        return stages

    def constants(self) -> dict[str, np.ndarray]:
        """Stored filler tokens per sensor (none for the ``drop`` filler)."""
        return {}
