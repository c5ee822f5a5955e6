"""The one forward every method shares: encode -> fill -> fuse -> route -> experts -> readout -> head.

A method is a choice of parts (a filler, a router, an expert bank with its mixing rule) plus
training objectives (:mod:`edgemoe.model.objectives`). The forward returns the logits and a
:class:`Trace` of what it computed; objectives read the trace and never touch the inference path,
so the deployed computation is the same code for every method. Stage modules (the cut points the
exporter turns into ONNX graphs) are the parts themselves, and the runtime's numpy executor
implements only top-k, the mixer and the pool over them — parity tests hold all three equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.core.engine import TensorSpec
from edgemoe.core.stages import FUSION, GATE, HEAD, StageLayout, encoder_stage, expert_stage, imputer_stage, stage_tensors
from edgemoe.core.schema import ModelConfig
from edgemoe.model.encoders import SensorEncoder
from edgemoe.model.experts import Combined, ExpertBank
from edgemoe.model.fillers import DropFiller
from edgemoe.model.fusion import SensorMessages, TokenFusion
from edgemoe.model.routing import Router, Routing, masked_mean


@dataclass(frozen=True)
class Trace:
    """What one forward computed, for the training objectives."""

    frames: Mapping[str, torch.Tensor]
    present: torch.Tensor  # [B, M] bool
    observed: torch.Tensor  # [B, M*S, D] every encoder's tokens
    tokens: torch.Tensor  # [B, T, D] the router's input (after fillers)
    token_mask: torch.Tensor  # [B, T] bool, tokens that count in the pool
    routing: Routing
    combined: Combined


@dataclass(frozen=True)
class ModelOutput:
    logits: torch.Tensor  # [B, C]
    trace: Trace

    @property
    def token_mask(self) -> torch.Tensor:
        return self.trace.token_mask

    @property
    def chosen(self) -> torch.Tensor:
        """``[B, T, k]`` expert indices per token."""
        b, t = self.trace.token_mask.shape
        return self.trace.routing.token_index.reshape(b, t, -1)


@dataclass(frozen=True)
class StageModule:
    """A stage as exported: the module and its named, symbolic-shaped tensors."""

    module: nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class Head(nn.Module):
    """``Linear(LN(x))`` over the readout: one pooled token, or ``slots`` per-sensor slots each
    normalised on its own (a zero slot, a missing sensor's under ``drop``, stays a constant)."""

    def __init__(self, dim: int, num_classes: int, slots: int = 1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(slots * dim, num_classes)
        self.slots = slots

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.slots == 1:
            return self.out(self.norm(pooled))
        return self.out(self.norm(pooled.unflatten(-1, (self.slots, -1))).flatten(-2))


class HeadProbs(nn.Module):
    """The exported head: probabilities, so every backend hands out the same thing."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(pooled), dim=-1)


class MoEModel(nn.Module):
    """Per-sensor encoders, a filler, a router, an expert bank and a head; ``objectives`` add
    the method's training losses to the task cross-entropy."""

    def __init__(self, config: ModelConfig, filler: DropFiller, router: Router, experts: ExpertBank,
                 objectives: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.config = config
        spec = config.model
        self.encoders = nn.ModuleDict(
            {s.name: SensorEncoder(s, spec.tokens_per_sensor, spec.dim) for s in config.sensors}
        )
        self.filler = filler
        self.fusion = self._fusion(config) if spec.fusion == "attention" else None
        self.router = router
        self.experts = experts
        self.readout_kind = spec.readout or "mean"
        self.head = Head(spec.dim, config.num_classes, config.num_sensors if self.readout_kind == "slots" else 1)
        self.objectives = nn.ModuleDict(dict(objectives or {}))

    @staticmethod
    def _fusion(config: ModelConfig) -> TokenFusion:
        spec = config.model
        messages = (SensorMessages(config.num_sensors, spec.tokens_per_sensor, spec.dim)
                    if spec.fusion_messages else None)
        return TokenFusion(spec.dim, spec.fusion_heads, spec.expert_hidden, spec.fusion_layers, messages)

    # -- forward -------------------------------------------------------------------------------
    def encode(self, frames: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Every sensor's tokens ``[B, M*S, D]`` (a missing sensor's slots are dropped by ``fill``)."""
        return torch.cat([self.encoders[name](frames[name]) for name in self.config.sensor_names], 1)

    def fill(self, observed: torch.Tensor, present: torch.Tensor,
             frames: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``[B, T, D]`` the router sees under ``present`` and the mask of those that count:
        the filler's, then cross-sensor fusion when the model has it."""
        tokens, token_mask = self.filler(observed, present, dict(frames), self.encoders)
        if self.fusion is not None:
            tokens = self.fusion(tokens, token_mask)
        return tokens, token_mask

    def back(self, tokens: torch.Tensor, token_mask: torch.Tensor, routing: Routing, present: torch.Tensor,
             frames: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, Combined]:
        """Experts, readout and head under a given routing."""
        b, t, d = tokens.shape
        combined = self.experts(tokens.reshape(b * t, d), routing)
        return self.head(self.readout(combined.tokens.reshape(b, t, d), token_mask, present, frames)), combined

    def readout(self, mixed: torch.Tensor, token_mask: torch.Tensor, present: torch.Tensor,
                frames: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The head's input from the experts' output tokens ``[B, M*S, D]``: their masked mean
        ``[B, D]``, or per-sensor slots ``[B, M*D]`` after the filler's late imputation (a slot
        with no token that counts is zero)."""
        if self.readout_kind == "mean":
            return masked_mean(mixed, token_mask)
        mixed, token_mask = self.filler.after_experts(mixed, token_mask, present, dict(frames), self.encoders)
        b, _, d = mixed.shape
        m, s = self.config.num_sensors, self.config.model.tokens_per_sensor
        slots = masked_mean(mixed.reshape(b * m, s, d), token_mask.reshape(b * m, s))
        return slots.reshape(b, m * d)

    def forward(self, frames: Mapping[str, torch.Tensor], present: torch.Tensor) -> ModelOutput:
        observed = self.encode(frames)
        tokens, token_mask = self.fill(observed, present, frames)
        routing = self.router(tokens, token_mask)
        logits, combined = self.back(tokens, token_mask, routing, present, frames)
        return ModelOutput(logits, Trace(frames, present, observed, tokens, token_mask, routing, combined))

    def routed_logits(self, frames: Mapping[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """The forward's logits with each expert run only on the present tokens routed to it
        (:meth:`ExpertBank.routed`), as the runtime runs them: for graphs exported for
        inference. Same arithmetic per token as :meth:`forward`; no trace."""
        tokens, token_mask = self.fill(self.encode(frames), present, frames)
        routing = self.router(tokens, token_mask)
        b, t, d = tokens.shape
        mixed = self.experts.routed(tokens.reshape(b * t, d), routing, token_mask.reshape(-1))
        return self.head(self.readout(mixed.reshape(b, t, d), token_mask, present, frames))

    # -- training ------------------------------------------------------------------------------
    @property
    def samples_partials(self) -> bool:
        """True when an objective draws its own incomplete combinations (MARS): the trainer then
        shows every sample with all it recorded, so the reference pass is really complete."""
        return any(getattr(objective, "draws_partials", False) for objective in self.objectives.values())

    def standardize_inputs(self, recorded_frames: Mapping[str, torch.Tensor]) -> None:
        """Set each encoder's input statistics from recorded frames of the training split (a
        sensor with no recorded frame keeps the identity)."""
        for name, frames in recorded_frames.items():
            if frames.shape[0]:
                self.encoders[name].standardize.fit(frames)

    def loss_terms(self, output: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The task cross-entropy and every objective's weighted terms, by name."""
        terms = {"task": F.cross_entropy(output.logits, labels)}
        for objective in self.objectives.values():
            terms.update(objective(self, output, labels))
        return terms

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        return torch.stack(list(self.loss_terms(output, labels).values())).sum()

    # -- stages --------------------------------------------------------------------------------
    def layout(self) -> StageLayout:
        spec = self.config.model
        return StageLayout(
            sensors=self.config.sensor_names, tokens_per_sensor=spec.tokens_per_sensor,
            dim=spec.dim, num_experts=len(self.experts), top_k=self.router.top_k,
            num_classes=self.config.num_classes, filler=self.filler.kind, mixing=self.experts.mixing,
            route_by=self.router.route_by, fusion=self.fusion is not None,
            fusion_messages=self.fusion is not None and self.fusion.messages is not None,
            readout=self.readout_kind,
        )

    def stage_modules(self) -> dict[str, StageModule]:
        """Every stage as a standalone module with its tensors from the stage table, in
        execution order."""
        modules: dict[str, nn.Module] = {encoder_stage(name): self.encoders[name] for name in self.config.sensor_names}
        modules.update({imputer_stage(name): stage for name, stage in self.filler.stage_modules(self.encoders).items()})
        if self.fusion is not None:
            modules[FUSION] = self.fusion.stage()
        modules[GATE] = self.router.score
        modules.update({expert_stage(e): expert for e, expert in enumerate(self.experts.experts)})
        modules[HEAD] = HeadProbs(self.head)
        io = stage_tensors(self.layout(), {spec.name: spec.shape for spec in self.config.sensors})
        return {stage: StageModule(modules[stage], *tensors) for stage, tensors in io.items()}

    def constants(self) -> dict[str, np.ndarray]:
        """Stored filler tokens (``sensor@mask``) the runtime looks up; empty for most fillers."""
        return self.filler.constants(self.encoders)
