"""Cross-sensor fusion: masked self-attention over the present sensors' tokens.

Per-sensor encoders, per-token experts and a mean pool never let sensors inform each other, so
the best use of one sensor could not depend on which others are present (a disturbance that hits
every sensor differently can only be cancelled by combining them). One attention layer over the
tokens that count fixes that. Each encoder already adds a learned per-sensor token embedding, so
the layer knows which sensor a token came from.

The exported ``fusion`` stage takes the tokens of one mask ``[batch, sequence, D]`` (for the drop
filler only the present sensors' tokens exist, so their count varies with the mask) and needs no
mask input: attention over exactly the given tokens equals the training forward's attention
with absent keys masked out.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionBlock(nn.Module):
    """``LN(x + MHA(x))`` then ``LN(x + FFN(x))`` over the tokens that count."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.dim={dim} is not divisible by model.fusion_heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = tokens.shape
        h = self.heads
        q, k, v = self.qkv(tokens).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # [B, H, T, d/h] each
        scores = q @ k.transpose(-1, -2) * (d // h) ** -0.5  # [B, H, T, T]
        if token_mask is not None:
            scores = scores.masked_fill(~token_mask[:, None, None, :], float("-inf"))
        mixed = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, t, d)
        x = self.norm1(tokens + self.out(mixed))
        x = self.norm2(x + self.ffn(x))
        return x if token_mask is None else x * token_mask.unsqueeze(-1)


class TokenFusion(nn.Module):
    """``layers`` attention blocks: the exported ``fusion`` stage."""

    def __init__(self, dim: int, heads: int, hidden: int, layers: int = 1) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(AttentionBlock(dim, heads, hidden) for _ in range(layers))

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens, token_mask)
        return tokens
