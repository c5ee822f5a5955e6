"""Gate families (softmax, Laplace, Gaussian) and the noisy top-k used while training.

A gate maps tokens ``[T, D]`` to expert scores ``[T, N]``; higher is better. Top-k selection and
dispatch are NOT part of the gate: they happen in the executor, so the exported gate graph is a
plain dense function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Gate(nn.Module):
    """Scores from the columns ``w_e`` of ``W_g`` (random init: zero init ties every expert)."""

    def __init__(self, dim: int, num_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_experts, dim) * dim**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SoftmaxGate(Gate):
    """``l_e = x . w_e``"""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens @ self.weight.t()


def _squared_distance(tokens: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # ||x||^2 - 2 x.w + ||w||^2, clamped: exact arithmetic is >= 0, rounding is not.
    sq = (tokens * tokens).sum(-1, keepdim=True) - 2 * tokens @ weight.t() + (weight * weight).sum(-1)
    return sq.clamp_min(0.0)


class LaplaceGate(Gate):
    """``l_e = -||x - w_e||_2``"""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return -torch.sqrt(_squared_distance(tokens, self.weight) + 1e-6)


class GaussianGate(Gate):
    """``l_e = -||x - w_e||_2^2``"""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return -_squared_distance(tokens, self.weight)


GATES: dict[str, Callable[[int, int], Gate]] = {
    "softmax": SoftmaxGate,
    "laplace": LaplaceGate,
    "gaussian": GaussianGate,
}


class GateNoise(nn.Module):
    """Training-time noise ``eps * (softplus(x W_n) + 0.01)`` (Shazeer et al.); never exported."""

    def __init__(self, dim: int, num_experts: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, num_experts, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self, tokens: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noisy scores and the noise scale per score."""
        scale = F.softplus(self.proj(tokens)) + 0.01
        return scores + torch.randn_like(scores) * scale, scale


def smooth_load(clean: torch.Tensor, noisy: torch.Tensor, scale: torch.Tensor, k: int) -> torch.Tensor:
    """Expected tokens per expert under the gate noise: a differentiable load (Shazeer et al.).

    Expert e is in a token's top-k when its noisy score beats the k-th best of the others, so
    ``P = Phi((clean_e - threshold_e) / scale_e)`` with the threshold taken from the noisy scores.
    """
    if k >= clean.shape[-1]:
        return clean.new_full((clean.shape[-1],), float(clean.shape[0]))
    top = noisy.topk(k + 1, dim=-1).values
    inside = noisy >= top[:, k - 1 : k]
    threshold = torch.where(inside, top[:, k : k + 1], top[:, k - 1 : k])
    normal = torch.distributions.Normal(0.0, 1.0)
    return normal.cdf((clean - threshold) / scale).sum(0)


def top_k_route(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``[T, k]`` and softmax-over-top-k weights ``[T, k]`` (same rule as the executor)."""
    picked, index = scores.topk(k, dim=-1, sorted=True)
    return index, torch.softmax(picked, dim=-1)


def cv_squared(x: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation, the load-balancing penalty of Shazeer et al."""
    if x.numel() <= 1:
        return x.new_zeros(())
    return x.float().var() / (x.float().mean() ** 2 + 1e-10)
