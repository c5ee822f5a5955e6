"""Fillers: how a missing sensor's tokens are provided, one part per rule.

- ``drop`` (SMoE, MARS, dense): no tokens. They are zero-filled and excluded by the masked mean
  pool, which is exactly what the runtime does by not running the missing sensors' encoders.
- ``constant`` (Flex-MoE): learned tokens ``bank[c, m]`` per combination ``c`` and missing sensor
  ``m``, shipped in the bundle as ``constants['m@c']`` so the runtime fills by table lookup.
- ``imputer`` (Conf-SMoE): two-stage imputation. Stage 1 is a placeholder: while training, the
  encoding of the mean raw frame of a few (10) randomly drawn samples of the batch in which the
  sensor was observed, so the refiner learns from varied placeholders; deployed, the encoding of
  the running mean raw frame of all observed training frames (a buffer, so the device never needs
  the training set). Stage 2 refines it by cross-attention from the
  prototype tokens to the present sensors' tokens, keeping the top ``floor((M-1)S/4)`` attended
  tokens per query, then ``LN(x + attn V)``. Each ``imputer[m]`` stage is that refiner with the
  prototype frozen inside its graph. With the slots readout the refiner reads the present sensors'
  expert outputs instead, after the experts (:meth:`ImputerFiller.after_experts`).

Every filler maps the encoders' tokens ``[B, M*S, D]`` (missing sensors' slots hold whatever the
encoder made of a zero frame) and the presence ``[B, M]`` to the tokens the router sees and the
mask of the tokens that count in the pool.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from edgemoe.core.mask import all_masks, full_mask
from edgemoe.core.schema import ModelConfig
from edgemoe.model.masks import presence_to_masks

FillerKind = Literal["drop", "constant", "imputer"]
Filled = tuple[torch.Tensor, torch.Tensor]  # tokens [B, T, D], token mask [B, T]
PROTOTYPE_MOMENTUM = 0.05  # running mean of the observed raw frames: the deployed prototype
PLACEHOLDER_SAMPLES = 10  # observed frames averaged into a training-time placeholder


class DropFiller(nn.Module):
    kind: FillerKind = "drop"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.tokens_per_sensor = config.model.tokens_per_sensor

    def forward(self, observed: torch.Tensor, present: torch.Tensor, frames: dict[str, torch.Tensor],
                encoders: nn.ModuleDict) -> Filled:
        token_mask = present.repeat_interleave(self.tokens_per_sensor, dim=1)
        return observed * token_mask.unsqueeze(-1), token_mask

    def after_experts(self, mixed: torch.Tensor, token_mask: torch.Tensor, present: torch.Tensor,
                      frames: dict[str, torch.Tensor], encoders: nn.ModuleDict) -> Filled:
        """The experts' output tokens the slots readout reads: unchanged unless the filler
        imputes after the experts."""
        return mixed, token_mask

    def stage_modules(self, encoders: nn.ModuleDict) -> dict[str, nn.Module]:
        return {}

    def constants(self, encoders: nn.ModuleDict) -> dict[str, np.ndarray]:
        return {}


class BankFiller(DropFiller):
    """A learnable missing-sensor bank: one filler per combination and missing sensor."""

    kind: FillerKind = "constant"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        m, s, d = config.num_sensors, config.model.tokens_per_sensor, config.model.dim
        self.sensor_names = config.sensor_names
        self.bank = nn.Parameter(torch.randn(full_mask(m) + 1, m, s, d) * 0.02)

    def forward(self, observed: torch.Tensor, present: torch.Tensor, frames: dict[str, torch.Tensor],
                encoders: nn.ModuleDict) -> Filled:
        fill = self.bank[presence_to_masks(present)].flatten(1, 2)  # [B, M*S, D]
        keep = present.repeat_interleave(self.tokens_per_sensor, dim=1)
        return torch.where(keep.unsqueeze(-1), observed, fill), torch.ones_like(keep)

    def constants(self, encoders: nn.ModuleDict) -> dict[str, np.ndarray]:
        """``sensor@mask`` -> ``[S, D]`` learned filler, for every mask that misses the sensor."""
        bank = self.bank.detach().cpu().numpy()
        names = self.sensor_names
        return {f"{name}@{c}": bank[c, i] for c in all_masks(len(names))
                for i, name in enumerate(names) if not c >> i & 1}


def attended_tokens(num_sensors: int, tokens_per_sensor: int) -> int:
    """``floor((M-1) S / 4)``, at least 1 and never more than one sensor's tokens."""
    return max(1, min((num_sensors - 1) * tokens_per_sensor // 4, tokens_per_sensor))


class CrossAttentionRefiner(nn.Module):
    """``LN(q + top-k-softmax(q K^T / sqrt(D)) V)``; absent context tokens are masked out."""

    def __init__(self, dim: int, keep: int) -> None:
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.norm = nn.LayerNorm(dim)
        self.keep = keep

    def forward(self, queries: torch.Tensor, context: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.query(queries) @ self.key(context).transpose(1, 2) / queries.shape[-1] ** 0.5
        if valid is not None:
            scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
        # pad with -inf so top-k works even when the context is shorter than ``keep``
        pad = torch.full_like(scores[..., :1], float("-inf")).expand(-1, -1, self.keep)
        kth = torch.cat([scores, pad], -1).topk(self.keep, dim=-1).values[..., -1:]
        attn = torch.softmax(scores.masked_fill(scores < kth, float("-inf")), dim=-1)
        return self.norm(queries + attn @ self.value(context))


class ImputerStage(nn.Module):
    """The exported ``imputer[m]``: the prototype is a constant of the graph."""

    def __init__(self, prototype: torch.Tensor, refiner: CrossAttentionRefiner) -> None:
        super().__init__()
        self.register_buffer("prototype", prototype.detach().clone())
        self.refiner = refiner

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        queries = self.prototype.unsqueeze(0).expand(context.shape[0], -1, -1)
        return self.refiner(queries, context)


class ImputerFiller(DropFiller):
    """Two-stage imputation (Conf-SMoE): prototype, then cross-attention refinement.

    With the mean readout the missing sensors' tokens are imputed from the present sensors'
    encoder tokens and join the token pool before the experts. With the slots readout (the
    public design) the experts see the present tokens only, as with ``drop``, and each missing
    sensor's tokens are imputed from the present sensors' expert outputs into its readout slot."""

    kind: FillerKind = "imputer"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.late = config.model.readout == "slots"
        keep = attended_tokens(config.num_sensors, self.tokens_per_sensor)
        self.sensor_names = config.sensor_names
        self.refiners = nn.ModuleDict({s: CrossAttentionRefiner(config.model.dim, keep) for s in self.sensor_names})
        for s in config.sensors:
            self.register_buffer(f"raw_mean_{s.name}", torch.zeros(1, *s.shape))

    def prototype(self, name: str, encoders: nn.ModuleDict) -> torch.Tensor:
        """Stage 1: ``[S, D]`` encoding of the running mean raw frame of sensor ``name``."""
        return encoders[name](getattr(self, f"raw_mean_{name}"))[0]

    def _placeholders(self, frames: dict[str, torch.Tensor], present: torch.Tensor,
                      encoders: nn.ModuleDict) -> dict[str, torch.Tensor]:
        """Stage 1 while training: per sensor, the encoded mean of a few random observed frames
        of the batch (the prototype when the batch observed none); also updates the running
        mean that becomes the deployed prototype."""
        placeholders = {}
        for i, name in enumerate(self.sensor_names):
            seen = frames[name][present[:, i]]
            if not seen.shape[0]:
                placeholders[name] = self.prototype(name, encoders)
                continue
            with torch.no_grad():
                buf = getattr(self, f"raw_mean_{name}")
                buf.mul_(1 - PROTOTYPE_MOMENTUM).add_(PROTOTYPE_MOMENTUM * seen.mean(0, keepdim=True))
            pick = torch.randperm(seen.shape[0], device=seen.device)[:PLACEHOLDER_SAMPLES]
            placeholders[name] = encoders[name](seen[pick].mean(0, keepdim=True))[0]
        return placeholders

    def forward(self, observed: torch.Tensor, present: torch.Tensor, frames: dict[str, torch.Tensor],
                encoders: nn.ModuleDict) -> Filled:
        if self.late:
            return super().forward(observed, present, frames, encoders)
        return self.impute(observed, present, frames, encoders)

    def after_experts(self, mixed: torch.Tensor, token_mask: torch.Tensor, present: torch.Tensor,
                      frames: dict[str, torch.Tensor], encoders: nn.ModuleDict) -> Filled:
        if not self.late:
            return mixed, token_mask
        return self.impute(mixed, present, frames, encoders)

    def impute(self, context: torch.Tensor, present: torch.Tensor, frames: dict[str, torch.Tensor],
               encoders: nn.ModuleDict) -> Filled:
        """Present sensors keep their tokens of ``context`` ``[B, M*S, D]``, missing ones are
        imputed from them; every token counts."""
        if self.training:
            placeholders = self._placeholders(frames, present, encoders)
        else:
            placeholders = {name: self.prototype(name, encoders) for name in self.sensor_names}
        s = self.tokens_per_sensor
        valid = present.repeat_interleave(s, dim=1)
        parts = []
        for i, name in enumerate(self.sensor_names):
            own = context[:, i * s : (i + 1) * s]
            queries = placeholders[name].unsqueeze(0).expand(own.shape[0], -1, -1)
            imputed = self.refiners[name](queries, context, valid)
            parts.append(torch.where(present[:, i, None, None], own, imputed))
        return torch.cat(parts, 1), torch.ones_like(valid)

    def stage_modules(self, encoders: nn.ModuleDict) -> dict[str, nn.Module]:
        """``sensor -> ImputerStage`` with the current prototype frozen in."""
        with torch.no_grad():
            return {name: ImputerStage(self.prototype(name, encoders), self.refiners[name])
                    for name in self.sensor_names}

    def constants(self, encoders: nn.ModuleDict) -> dict[str, np.ndarray]:
        return {}


FILLERS: dict[FillerKind, type[DropFiller]] = {
    "drop": DropFiller,
    "constant": BankFiller,
    "imputer": ImputerFiller,
}
