"""The expert bank: dispatch tokens to their routed experts and combine the outputs.

Output of a token ``x`` routed to experts ``e_1..e_k``: ``x + sum_j w_j E_{e_j}(x)``. The mixing
weight ``w_j`` is either the router's softmax over the top-k scores (``softmax`` mixing) or the
expert's own confidence output (``confidence`` mixing, Conf-SMoE's decoupled gating). Training
computes every expert on every token (small models, simple autograd) and picks the routed
outputs; the runtime runs each expert on its routed tokens only, and so does :meth:`ExpertBank.routed`,
the form a fused graph can take (``edgemoe.export.fused``). The arithmetic per token is the same,
which the parity tests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from edgemoe.model.routing import Routing

Mixing = Literal["softmax", "confidence"]


class Expert(nn.Module):
    """``D -> hidden -> D`` MLP with GELU; its output is the residual delta."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


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


@dataclass(frozen=True)
class Combined:
    """What the bank computed for ``R`` tokens, recorded for the training objectives."""

    tokens: torch.Tensor  # [R, D] x + sum_j w_j delta_j
    picked: torch.Tensor  # [R, k, D] the routed experts' deltas, best-scored first
    weight: torch.Tensor  # [R, k] their mixing weights
    confidence: torch.Tensor | None  # [R, N] every expert's confidence (confidence mixing)


class ExpertBank(nn.Module):
    """``N`` experts and the rule that mixes the routed ones."""

    def __init__(self, experts: list[nn.Module], mixing: Mixing) -> None:
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.mixing: Mixing = mixing

    @classmethod
    def of(cls, mixing: Mixing, num_experts: int, dim: int, hidden: int) -> ExpertBank:
        make = ConfidentExpert if mixing == "confidence" else Expert
        return cls([make(dim, hidden) for _ in range(num_experts)], mixing)

    def __len__(self) -> int:
        return len(self.experts)

    def forward(self, flat: torch.Tensor, routing: Routing) -> Combined:
        outputs = [expert(flat) for expert in self.experts]
        confidence = None
        if self.mixing == "confidence":
            deltas, confs = zip(*outputs)
            delta, confidence = torch.stack(deltas, 0), torch.cat(confs, 1)  # [N, R, D], [R, N]
        else:
            delta = torch.stack(outputs, 0)
        index = routing.token_index
        rows = torch.arange(flat.shape[0], device=flat.device)
        picked = torch.stack([delta[index[:, j], rows] for j in range(index.shape[1])], 1)
        weight = routing.token_weight if confidence is None else confidence.gather(1, index)
        return Combined(flat + (weight.unsqueeze(-1) * picked).sum(1), picked, weight, confidence)

    def routed(self, flat: torch.Tensor, routing: Routing, live: torch.Tensor) -> torch.Tensor:
        """``x + sum_j w_j E_j(x)`` for the ``live`` rows ``[R]`` (bool), computing each expert
        only on the live rows routed to it: inference only, nothing recorded for training.

        Exported, this is gather -> expert -> scatter-add per expert (``NonZero``, ``Gather``,
        ``ScatterND``): a batch-1 graph then reads the weights of the experts its tokens chose,
        not of all N, which is what bounds small batch-1 layers. Rows that are not live (a dropped
        sensor's slots, pooled out anyway) go to no expert and come back unchanged."""
        n = len(self.experts)
        index = routing.token_index.masked_fill(~live.unsqueeze(1), n)
        # which rows each expert takes and with what softmax weight, once for all experts (a row
        # holds an expert in at most one of its k slots), so each expert adds only its gather,
        # its rows, its scatter
        onehot = index.unsqueeze(-1) == torch.arange(n, device=flat.device)  # [R, k, N]
        hits = onehot.any(1).t()  # [N, R]
        weights = (routing.token_weight.unsqueeze(-1) * onehot).sum(1).t()  # [N, R]
        mixed = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows = hits[e].nonzero().squeeze(1)
            tokens = flat.index_select(0, rows)
            if self.mixing == "confidence":
                delta, confidence = expert(tokens)
                weight = confidence[:, 0]
            else:
                delta = expert(tokens)
                weight = weights[e].index_select(0, rows)
            mixed = mixed.index_add(0, rows, weight.unsqueeze(1) * delta)
        return flat + mixed
