"""Cross-sensor fusion: pairwise sensor messages, then masked self-attention over the tokens.

Per-sensor encoders, per-token experts and a mean pool never let sensors inform each other, so
the best use of one sensor could not depend on which others are present (a disturbance that hits
every sensor differently can only be cancelled by combining them). The fusion stage fixes that:

- :class:`SensorMessages` (``model.fusion_messages``) adds to each present sensor's tokens the
  mean, over the *other* present sensors, of a linear message specific to the (receiver, sender)
  pair. If sensor ``r`` feels a disturbance ``A_r z`` and each message ``W[r, s]`` learns to
  estimate ``-A_r z`` from sender ``s`` alone, the mean over senders cancels it exactly for every
  combination of senders — one set of weights serves all masks. Attention cannot express this:
  its value map belongs to the sender and is shared by every receiver.
- :class:`AttentionBlock` layers then mix the tokens freely; each encoder adds a learned
  per-sensor token embedding, so a layer knows which sensor a token came from.

The exported ``fusion`` stage takes the tokens of one mask ``[batch, sequence, D]`` (for the drop
filler only the present sensors' tokens exist, so their count varies with the mask) and, with
messages, ``token_sensors`` ``[batch, sequence, M]``: which sensor each token belongs to, one-hot,
a constant of the mask that the runtime compiles at load and repeats per sample (per sample so
that calibration sets, which stack every input's rows, can hold the runs of several masks). No
mask input is needed: attention over exactly the given tokens equals the training forward's
attention with absent keys masked out, and a sensor without tokens sends no message.
"""

from __future__ import annotations

import torch
from torch import nn


class SensorMessages(nn.Module):
    """``LN(x_r + mean over present s != r of W[r, s] @ mean_token(s))`` for every present sensor r.

    Training and the exported stage run the same code; they differ only in ``token_sensors``."""

    def __init__(self, num_sensors: int, tokens_per_sensor: int, dim: int) -> None:
        super().__init__()
        m = num_sensors
        self.num_sensors, self.tokens_per_sensor, self.dim = m, tokens_per_sensor, dim
        self.weight = nn.Parameter(torch.randn(m, m, dim, dim) * (0.5 / dim**0.5))  # [receiver, sender, out, in]
        self.norm = nn.LayerNorm(dim)
        # the training layout: every sensor's tokens in sensor order (a mask only zeroes them)
        self.register_buffer("all_sensors", torch.eye(m).repeat_interleave(tokens_per_sensor, 0),
                             persistent=False)
        self.register_buffer("others", 1.0 - torch.eye(m), persistent=False)

    def forward(self, tokens: torch.Tensor, token_sensors: torch.Tensor) -> torch.Tensor:
        """``tokens`` [B, T, D]; ``token_sensors`` [B, T, M]: each token's sensor, one-hot, a zero
        row for a slot that does not count. A sensor is present when it has its S tokens.

        Presence is arithmetic (token count over S), not a comparison: a bool tensor between
        casts does not survive the FP16 conversion of the exported graph."""
        b, m, d = tokens.shape[0], self.num_sensors, self.dim
        scale = 1.0 / self.tokens_per_sensor
        present = token_sensors.sum(-2) * scale  # [B, M], 1 or 0
        pooled = torch.matmul(token_sensors.transpose(-1, -2), tokens) * scale  # [B, M, D] mean tokens
        pairs = (self.weight * self.others[:, :, None, None]).permute(0, 2, 1, 3).reshape(m * d, m * d)
        messages = (pooled.reshape(b, m * d) @ pairs.transpose(0, 1)).reshape(b, m, d)
        senders = (present.sum(-1, keepdim=True) - present).clamp(min=1.0)  # other present sensors
        return self.norm(tokens + torch.matmul(token_sensors, messages / senders.unsqueeze(-1)))

    def training_layout(self, token_mask: torch.Tensor) -> torch.Tensor:
        """``token_sensors`` [B, M*S, M] of the training forward: every sensor's slots in sensor
        order, zeroed where ``token_mask`` [B, M*S] says a slot does not count."""
        return self.all_sensors * token_mask.unsqueeze(-1).to(self.all_sensors.dtype)


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
    """Sensor messages (optional), then ``layers`` attention blocks.

    ``forward(tokens, token_mask)`` is the training form over every sensor's token slots;
    :meth:`stage` is the exported form over one mask's tokens."""

    def __init__(self, dim: int, heads: int, hidden: int, layers: int = 1,
                 messages: SensorMessages | None = None) -> None:
        super().__init__()
        self.messages = messages
        self.blocks = nn.ModuleList(AttentionBlock(dim, heads, hidden) for _ in range(layers))

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.messages is not None:
            if token_mask is None:
                raise ValueError("sensor messages need the token mask; the exported form is "
                                 "TokenFusion.stage()")
            token_sensors = self.messages.training_layout(token_mask)
            tokens = self.messages(tokens, token_sensors) * token_mask.unsqueeze(-1)
        return self._attend(tokens, token_mask)

    def _attend(self, tokens: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens, token_mask)
        return tokens

    def stage(self) -> nn.Module:
        """The exported ``fusion`` stage: ``(tokens)`` or, with messages, ``(tokens, token_sensors)``."""
        return _FusionStage(self) if self.messages is not None else _AttentionStage(self)


class _AttentionStage(nn.Module):
    def __init__(self, fusion: TokenFusion) -> None:
        super().__init__()
        self.fusion = fusion

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fusion._attend(tokens, None)


class _FusionStage(_AttentionStage):
    def forward(self, tokens: torch.Tensor, token_sensors: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        messages = self.fusion.messages
        assert messages is not None
        return self.fusion._attend(messages(tokens, token_sensors), None)
