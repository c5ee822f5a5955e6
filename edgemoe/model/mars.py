"""Residual-guided expert specialisation (public name MARS).

Training runs two passes per sample: the sample's own sensors (``z_full``) and an incomplete
combination drawn from them (``z_part``). The residual ``r = pool(z_part - z_full)`` says how the
missing sensors distort the representation; a residual router (training only) routes the partial
pass by it, so experts specialise in kinds of missingness. The feature router ``MLP(pool z)`` -
the only router deployed - is distilled from it (KL on the partial pass) and routes the full pass.
A noise-ordering loss gives more gate noise to experts on which the two routers disagree more, and
combination sampling trains the combinations with high router disagreement more often.

Routing is per sample (``route_by='sample'``): the exported gate maps each sample's mean present
token ``[batch, D]`` to expert scores, and all its tokens go to the same top-k experts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.core.mask import full_mask
from edgemoe.core.stages import GATE, stage_tensors
from edgemoe.core.schema import ModelConfig
from edgemoe.model.flexmoe import presence_to_masks
from edgemoe.model.gates import GATES, GateNoise, cv_squared, smooth_load, top_k_route
from edgemoe.model.smoe import ModelOutput, SparseMoE, StageModule

BALANCE_WEIGHT = 0.05  # load balancing of the residual router
DISTILL_WEIGHT = 0.5  # KL(residual router || feature router) on the partial pass
NOISE_WEIGHT = 0.01  # noise-ordering loss
WARMUP_STEPS = 100  # uniform combination sampling before the router disagreement is trusted
TEMPERATURE = 0.05
FLOOR = 0.05
HARDNESS_MOMENTUM = 0.1


class FeatureRouter(nn.Module):
    """``l_fea = gate(MLP(pool z))``: the configured gate family on a learned sample feature."""

    def __init__(self, dim: int, num_experts: int, gate: str) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.gate = GATES[gate](dim, num_experts)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.gate(self.mlp(pooled))


def masked_pool(tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    weight = token_mask.unsqueeze(-1).float()
    return (tokens * weight).sum(1) / weight.sum(1).clamp_min(1.0)


def noise_ordering(scale: torch.Tensor, disagreement: torch.Tensor) -> torch.Tensor:
    """Hinge over expert pairs: if experts i disagree more than j, i's noise should exceed j's."""
    s, d = scale.mean(0), disagreement.detach()
    wanted = (d[:, None] > d[None, :]).float()
    return (wanted * F.relu(s[None, :] - s[:, None])).sum() / wanted.sum().clamp_min(1.0)


class ResidualGuidedMoE(SparseMoE):
    route_by = "sample"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        d, n, m = config.model.dim, config.model.num_experts, config.num_sensors
        self.gate = FeatureRouter(d, n, config.model.gate)
        self.residual_router = nn.Linear(d, n, bias=False)
        self.residual_noise = GateNoise(d, n)
        self.register_buffer("hardness", torch.zeros(full_mask(m) + 1))  # disagreement per combination
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    # -- passes --------------------------------------------------------------------------------
    def apply_experts(self, tokens: torch.Tensor, token_mask: torch.Tensor, index: torch.Tensor,
                      weight: torch.Tensor) -> torch.Tensor:
        """``h(pool(z + sum_j w_j E_j(z)))`` with per-sample choices ``[B, k]``."""
        b, t, d = tokens.shape
        flat = tokens.reshape(b * t, d)
        outputs = torch.stack([expert(flat) for expert in self.experts], 0)
        rows = torch.arange(b * t, device=flat.device)
        idx, w = index.repeat_interleave(t, 0), weight.repeat_interleave(t, 0)
        delta = sum(w[:, j, None] * outputs[idx[:, j], rows] for j in range(idx.shape[1]))
        return self.head(masked_pool((flat + delta).reshape(b, t, d), token_mask))

    def forward(self, frames: dict[str, torch.Tensor], present: torch.Tensor) -> ModelOutput:
        tokens, token_mask = self.encode(frames, present)
        if self.training:
            return self._train_forward(tokens, token_mask, present)
        scores = self.gate(masked_pool(tokens, token_mask))
        index, weight = top_k_route(scores, self.config.model.top_k)
        logits = self.apply_experts(tokens, token_mask, index, weight)
        chosen = index.unsqueeze(1).expand(-1, tokens.shape[1], -1)
        return ModelOutput(logits, tokens.new_zeros(()), chosen, token_mask)

    def _train_forward(self, z_full: torch.Tensor, mask_full: torch.Tensor, present: torch.Tensor) -> ModelOutput:
        k, s = self.config.model.top_k, self.config.model.tokens_per_sensor
        part = self.sample_partial(present)
        mask_part = part.repeat_interleave(s, dim=1)
        z_part = z_full * mask_part.unsqueeze(-1)
        residual = (z_part - z_full).mean(1)
        res_clean = self.residual_router(residual)
        res_scores, scale = self.residual_noise(residual, res_clean)
        res_index, res_weight = top_k_route(res_scores, k)
        pooled_full = masked_pool(z_full, mask_full)
        fea_full = self.gate(pooled_full)
        if self.config.model.noisy_gating:
            fea_full, _ = self.noise(pooled_full, fea_full)
        fea_index, fea_weight = top_k_route(fea_full, k)
        fea_part = self.gate(masked_pool(z_part, mask_part))
        logits_full = self.apply_experts(z_full, mask_full, fea_index, fea_weight)
        logits_part = self.apply_experts(z_part, mask_part, res_index, res_weight)
        p_res = torch.zeros_like(res_scores).scatter(1, res_index, res_weight)
        p_fea = torch.softmax(fea_part, -1)
        balance = cv_squared(p_res.sum(0)) + cv_squared(smooth_load(res_clean, res_scores, scale, k))
        distill = F.kl_div(F.log_softmax(fea_part, -1), F.softmax(res_clean.detach(), -1), reduction="batchmean")
        ordering = noise_ordering(scale, (p_res - p_fea).abs().mean(0))
        self._track_hardness(part, res_index, fea_part.topk(k, -1).indices)
        aux = BALANCE_WEIGHT * balance + DISTILL_WEIGHT * distill + NOISE_WEIGHT * ordering
        chosen = fea_index.unsqueeze(1).expand(-1, z_full.shape[1], -1)
        return ModelOutput(logits_full, aux, chosen, mask_full, {"logits_part": logits_part})

    def loss(self, output: ModelOutput, labels: torch.Tensor) -> torch.Tensor:
        """``CE(y_full) + CE(y_part)`` + the weighted router terms already in ``aux_loss``."""
        part = F.cross_entropy(output.extra["logits_part"], labels) if "logits_part" in output.extra else 0.0
        return F.cross_entropy(output.logits, labels) + part + output.aux_loss

    # -- combination sampling ------------------------------------------------------------------
    def combination_probs(self) -> torch.Tensor:
        """Over incomplete combinations 1..2^M-2: uniform in warm-up, then
        ``max(softmax(d / tau), floor)`` renormalised."""
        n = self.hardness.shape[0] - 2
        if n <= 0:
            return self.hardness.new_ones(1)
        if int(self.steps) < WARMUP_STEPS:
            return self.hardness.new_full((n,), 1.0 / n)
        probs = torch.softmax(self.hardness[1:-1] / TEMPERATURE, 0).clamp_min(FLOOR)
        return probs / probs.sum()

    def sample_partial(self, present: torch.Tensor) -> torch.Tensor:
        """A combination per sample, intersected with what it has; never empty."""
        self.steps += 1
        masks = presence_to_masks(present)
        if self.hardness.shape[0] <= 2:
            return present
        drawn = torch.multinomial(self.combination_probs(), masks.shape[0], replacement=True) + 1
        part = drawn & masks
        part = torch.where(part == 0, masks, part)
        bits = torch.arange(present.shape[1], device=present.device)
        return (part[:, None] >> bits & 1).bool()

    def _track_hardness(self, part: torch.Tensor, res_top: torch.Tensor, fea_top: torch.Tensor) -> None:
        """EMA of ``1 - |T_res & T_fea| / k`` per combination."""
        with torch.no_grad():
            k = res_top.shape[1]
            overlap = (res_top[:, :, None] == fea_top[:, None, :]).any(-1).float().sum(1) / k
            combos = presence_to_masks(part)
            total = torch.zeros_like(self.hardness).index_add_(0, combos, 1 - overlap)
            count = torch.zeros_like(self.hardness).index_add_(0, combos, torch.ones_like(overlap))
            seen = count > 0
            update = total[seen] / count[seen]
            self.hardness[seen] = (1 - HARDNESS_MOMENTUM) * self.hardness[seen] + HARDNESS_MOMENTUM * update

    # -- stages --------------------------------------------------------------------------------
    def stage_modules(self) -> dict[str, StageModule]:
        stages = super().stage_modules()
        io = stage_tensors(self.layout(), {spec.name: spec.shape for spec in self.config.sensors})
        stages[GATE] = StageModule(self.gate, *io[GATE])
        return stages
