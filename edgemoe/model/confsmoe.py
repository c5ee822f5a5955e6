"""Conf-SMoE: two-stage imputation of missing sensors and confidence-decoupled mixing.

Imputation. Stage 1 is a per-sensor prototype: the encoding of the running mean raw frame of
training samples in which the sensor was observed (a buffer, so the device never needs the
training set). Stage 2 refines it by cross-attention from the prototype tokens to the present
sensors' tokens, keeping only the top ``floor((M-1)S/4)`` attended tokens per query, then
``LN(x + attn V)``. Each ``imputer[m]`` stage is that refiner with the prototype frozen inside
its graph; the prototypes are also written to ``constants.npz`` for inspection.

Mixing. The gate only picks the top-k experts; the mixing weight of expert ``e`` is its own
confidence ``c_e = sigmoid(a_e . LN(E_e(x)) + b_e)`` (an expert stage has a second output), trained
to regress ``t_e = stopgrad(softmax(W_p E_e(x))[y])`` through a shared probe ``W_p`` with its own
cross-entropy. There is NO load-balancing loss. The gate learns to score the experts whose
confidence is high (``MSE(sigmoid(score), stopgrad(c))``), so top-k picks the confident experts
without running all of them at inference.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.core.stages import expert_stage, imputer_stage, stage_tensors
from edgemoe.core.schema import ModelConfig
from edgemoe.model.gates import top_k_route
from edgemoe.model.smoe import Expert, ModelOutput, SparseMoE, StageModule

PROTOTYPE_MOMENTUM = 0.05  # running mean of the observed raw frames
CONFIDENCE_WEIGHT = 1.0  # MSE(c, t)
GATE_WEIGHT = 1.0  # MSE(sigmoid(gate score), stopgrad(c))


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


class ConfidentExpert(nn.Module):
    """An expert with a confidence head: ``(delta, sigmoid(a . LN(delta) + b))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.expert = Expert(dim, hidden)
        self.norm = nn.LayerNorm(dim)
        self.confidence = nn.Linear(dim, 1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        delta = self.expert(tokens)
        return delta, torch.sigmoid(self.confidence(self.norm(delta)))


class ConfSMoE(SparseMoE):
    filler = "imputer"
    mixing = "confidence"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        spec = config.model
        self.experts = nn.ModuleList(ConfidentExpert(spec.dim, spec.expert_hidden) for _ in range(spec.num_experts))
        keep = attended_tokens(config.num_sensors, spec.tokens_per_sensor)
        self.refiners = nn.ModuleDict({s: CrossAttentionRefiner(spec.dim, keep) for s in config.sensor_names})
        for s in config.sensors:
            self.register_buffer(f"raw_mean_{s.name}", torch.zeros(1, *s.shape))
        self.probe = nn.Linear(spec.dim, config.num_classes)

    # -- imputation ----------------------------------------------------------------------------
    def prototype(self, name: str) -> torch.Tensor:
        """Stage 1: ``[S, D]`` encoding of the running mean raw frame of sensor ``name``."""
        return self.encoders[name](getattr(self, f"raw_mean_{name}"))[0]

    def _track_raw_means(self, frames: dict[str, torch.Tensor], present: torch.Tensor) -> None:
        with torch.no_grad():
            for i, name in enumerate(self.config.sensor_names):
                seen = frames[name][present[:, i]]
                if seen.shape[0]:
                    buf = getattr(self, f"raw_mean_{name}")
                    buf.mul_(1 - PROTOTYPE_MOMENTUM).add_(PROTOTYPE_MOMENTUM * seen.mean(0, keepdim=True))

    def encode(self, frames: dict[str, torch.Tensor], present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Present sensors encoded, missing ones imputed (stage 1 + 2); every token counts."""
        if self.training:
            self._track_raw_means(frames, present)
        s = self.config.model.tokens_per_sensor
        observed = torch.cat([self.encoders[n](frames[n]) for n in self.config.sensor_names], 1)
        valid = present.repeat_interleave(s, dim=1)
        parts = []
        for i, name in enumerate(self.config.sensor_names):
            own = observed[:, i * s : (i + 1) * s]
            queries = self.prototype(name).unsqueeze(0).expand(own.shape[0], -1, -1)
            imputed = self.refiners[name](queries, observed, valid)
            parts.append(torch.where(present[:, i, None, None], own, imputed))
        return torch.cat(parts, 1), torch.ones_like(valid)

    # -- mixing --------------------------------------------------------------------------------
    def mix(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError("ConfSMoE mixes in forward (it needs the confidences)")

    def forward(self, frames: dict[str, torch.Tensor], present: torch.Tensor) -> ModelOutput:
        tokens, token_mask = self.encode(frames, present)
        b, t, d = tokens.shape
        flat = tokens.reshape(b * t, d)
        clean = self.gate(flat)
        scores = clean
        if self.training and self.config.model.noisy_gating:
            scores, _ = self.noise(flat, clean)
        index, _ = top_k_route(scores, self.config.model.top_k)
        deltas, confs = zip(*(expert(flat) for expert in self.experts))
        delta = torch.stack(deltas, 0)  # [N, T, D]
        conf = torch.cat(confs, 1)  # [T, N]
        picked_delta = torch.stack([delta[index[:, j], torch.arange(b * t)] for j in range(index.shape[1])], 1)
        picked_conf = conf.gather(1, index)  # [T, k]
        mixed = flat + (picked_conf.unsqueeze(-1) * picked_delta).sum(1)
        logits = self.head(mixed.reshape(b, t, d).mean(1))
        extra = {"picked_delta": picked_delta, "picked_conf": picked_conf, "clean": clean, "conf": conf}
        return ModelOutput(logits, flat.new_zeros(()), index.reshape(b, t, -1), token_mask, extra)

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """CE + MSE(confidence, true-class probe probability) + probe CE + gate regression.
        No load-balancing term."""
        x = output.extra
        tokens_per_sample = x["picked_delta"].shape[0] // labels.shape[0]
        k = x["picked_delta"].shape[1]
        token_labels = labels.repeat_interleave(tokens_per_sample).unsqueeze(1).expand(-1, k).reshape(-1)
        probe_logits = self.probe(x["picked_delta"].reshape(-1, x["picked_delta"].shape[-1]))
        probe_ce = F.cross_entropy(probe_logits, token_labels)
        target = torch.softmax(probe_logits.detach(), -1).gather(1, token_labels[:, None]).reshape(-1, k)
        confidence = F.mse_loss(x["picked_conf"], target)
        gate = F.mse_loss(torch.sigmoid(x["clean"]), x["conf"].detach())
        return (F.cross_entropy(output.logits, labels) + probe_ce + CONFIDENCE_WEIGHT * confidence
                + GATE_WEIGHT * gate)

    # -- stages --------------------------------------------------------------------------------
    def stage_modules(self) -> dict[str, StageModule]:
        stages = super().stage_modules()
        io = stage_tensors(self.layout(), {spec.name: spec.shape for spec in self.config.sensors})
        for e, expert in enumerate(self.experts):
            stages[expert_stage(e)] = StageModule(expert, *io[expert_stage(e)])
        with torch.no_grad():
            for name in self.config.sensor_names:
                stages[imputer_stage(name)] = StageModule(
                    ImputerStage(self.prototype(name), self.refiners[name]), *io[imputer_stage(name)])
        return stages

    def constants(self) -> dict[str, np.ndarray]:
        """The stage-1 prototypes ``[S, D]`` per sensor (also frozen inside each imputer graph)."""
        with torch.no_grad():
            return {name: self.prototype(name).cpu().numpy() for name in self.config.sensor_names}
