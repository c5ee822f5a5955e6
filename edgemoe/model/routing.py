"""Routers: tokens -> one :class:`Routing` value that dispatch, combine and every loss read.

A router scores routing *units* — each token (``route_by='token'``) or each sample's mean present
token (``route_by='sample'``) — with a gate family, adds Shazeer noise while training, and picks
the top-k experts. Everything downstream (the expert bank, the mixers, load balancing, MARS's
distillation) reads the same :class:`Routing`, so a change of routing rule is made once. The
runtime's numpy executor implements the same top-k and softmax; parity tests hold the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from edgemoe.model.gates import GATES, GateNoise, top_k_route

RouteBy = Literal["token", "sample"]


@dataclass(frozen=True)
class Routing:
    """The routing decision of one forward.

    ``clean``/``scores``/``scale``/``index``/``weight`` are per routing unit ``[U, ...]``;
    ``tokens_per_unit`` is 1 for token routing and ``T`` for sample routing, so
    :meth:`per_token` spreads a sample's choice over its tokens."""

    clean: torch.Tensor  # [U, N] scores without noise (what the exported gate computes)
    scores: torch.Tensor  # [U, N] scores that were ranked: clean + noise while training
    scale: torch.Tensor | None  # [U, N] noise scale, None when no noise was added
    index: torch.Tensor  # [U, k] chosen experts, best first
    weight: torch.Tensor  # [U, k] softmax over the chosen scores
    tokens_per_unit: int = 1

    def per_token(self, tensor: torch.Tensor) -> torch.Tensor:
        """A per-unit tensor repeated for each token of its unit: ``[U, ...] -> [U*per, ...]``."""
        return tensor if self.tokens_per_unit == 1 else tensor.repeat_interleave(self.tokens_per_unit, 0)

    @property
    def token_index(self) -> torch.Tensor:
        return self.per_token(self.index)

    @property
    def token_weight(self) -> torch.Tensor:
        return self.per_token(self.weight)


def masked_mean(tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the tokens that count, ``[B, T, D] -> [B, D]`` (the runtime's pool)."""
    weight = token_mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weight).sum(1) / weight.sum(1).clamp_min(1.0)


class Router(nn.Module):
    """Top-k routing by a gate family. ``score`` is the exported ``gate`` stage."""

    route_by: RouteBy = "token"

    def __init__(self, score: nn.Module, noise: GateNoise | None, top_k: int) -> None:
        super().__init__()
        self.score = score
        self.noise = noise
        self.top_k = top_k

    def units(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """What is scored: every token ``[B*T, D]``."""
        return tokens.reshape(-1, tokens.shape[-1])

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> Routing:
        units = self.units(tokens, token_mask)
        per = 1 if self.route_by == "token" else tokens.shape[1]
        return self.route(units, self.score(units), per)

    def route(self, units: torch.Tensor, clean: torch.Tensor, tokens_per_unit: int) -> Routing:
        """Route ``units`` by their ``clean`` scores (noise added while training). MARS's
        training-only residual router calls it with its own units (the residual)."""
        scores, scale = clean, None
        if self.training and self.noise is not None:
            scores, scale = self.noise(units, clean)
        index, weight = top_k_route(scores, self.top_k)
        return Routing(clean, scores, scale, index, weight, tokens_per_unit)


class FeatureScore(nn.Module):
    """``l = gate(MLP(pooled))``: the gate family on a learned per-sample feature (MARS's
    deployed feature router)."""

    def __init__(self, dim: int, num_experts: int, gate: str) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.gate = GATES[gate](dim, num_experts)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.gate(self.mlp(pooled))


class SampleRouter(Router):
    """Every token of a sample goes to the experts chosen for the sample's mean present token."""

    route_by: RouteBy = "sample"

    def units(self, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(tokens, token_mask)


def token_router(dim: int, num_experts: int, gate: str, top_k: int, noisy: bool) -> Router:
    return Router(GATES[gate](dim, num_experts), GateNoise(dim, num_experts) if noisy else None, top_k)


def sample_router(dim: int, num_experts: int, gate: str, top_k: int, noisy: bool) -> SampleRouter:
    noise = GateNoise(dim, num_experts) if noisy else None
    return SampleRouter(FeatureScore(dim, num_experts, gate), noise, top_k)
