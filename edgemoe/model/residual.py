"""Residual-guided expert specialisation (public name MARS), as a training objective.

The forward is the shared one with a per-sample feature router (``route_by='sample'``): the only
router deployed. Training adds a second, partial pass per sample: a strict subset of the
sample's sensors (``z_part``). The residual ``r = pool(z_part - z_full)`` says how the missing
sensors distort the representation; a residual router (training only) routes the partial pass by
it, so experts specialise in kinds of missingness. The feature router is distilled from it (KL on
the partial pass). A noise-ordering loss gives more gate noise to experts on which the two routers
disagree more (disagreement between the two routers' sparse top-k distributions, so agreeing
routers have none), and combination sampling trains the combinations with high router
disagreement more often.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.core.mask import full_mask
from edgemoe.model.gates import GateNoise, top_k_route
from edgemoe.model.masks import masks_to_presence, presence_to_masks
from edgemoe.model.objectives import Terms, load_balance
from edgemoe.model.routing import Router

if TYPE_CHECKING:
    from edgemoe.model.moe import ModelOutput, MoEModel

BALANCE_WEIGHT = 0.05  # load balancing of the residual router
DISTILL_WEIGHT = 0.5  # KL(residual router || feature router) on the partial pass
NOISE_WEIGHT = 0.01  # noise-ordering loss
WARMUP_STEPS = 100  # uniform combination sampling before the router disagreement is trusted
TEMPERATURE = 0.05
FLOOR = 0.05
HARDNESS_MOMENTUM = 0.1


def noise_ordering(scale: torch.Tensor, disagreement: torch.Tensor) -> torch.Tensor:
    """Hinge over expert pairs: if experts i disagree more than j, i's noise should exceed j's."""
    s, d = scale.mean(0), disagreement.detach()
    wanted = (d[:, None] > d[None, :]).float()
    return (wanted * F.relu(s[None, :] - s[:, None])).sum() / wanted.sum().clamp_min(1.0)


class ResidualGuidance(nn.Module):
    """The partial pass, the residual router and its three losses (plus the partial CE).

    The reference ``z_full`` is the forward's own pass over everything the sample recorded (the
    trainer applies no dropout for this method: ``draws_partials``). The partial pass shows a
    strict, non-empty subset of it, drawn from the hardness distribution and re-run through the
    front (filler, and any stage after the encoders), so the residual is never zero by
    construction. A sample that recorded one sensor has no such subset and stays out of the
    partial, residual and distillation terms.

    Beyond the paper's two cross-entropies (full pass by the feature router, partial pass by the
    residual router), the partial pass is also scored through the deployed feature router: the
    reference sees only complete inputs, so without this term the path that serves every
    incomplete mask at inference learns them only through the distillation."""

    draws_partials = True

    def __init__(self, dim: int, num_experts: int, num_sensors: int, top_k: int) -> None:
        super().__init__()
        self.router = Router(nn.Linear(dim, num_experts, bias=False), GateNoise(dim, num_experts), top_k)
        self.num_sensors = num_sensors
        self.register_buffer("hardness", torch.zeros(full_mask(num_sensors) + 1))  # per combination
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, model: MoEModel, output: ModelOutput, labels: torch.Tensor) -> Terms:
        trace = output.trace
        rows, part = self.sample_partial(trace.present)
        if rows.numel() == 0:  # every sample recorded a single sensor
            zero = output.logits.new_zeros(())
            return {"partial_task": zero, "partial_deployed": zero, "residual_balance": zero, "distill": zero,
                    "noise_ordering": zero}
        frames = {name: frame[rows] for name, frame in trace.frames.items()}
        z_part, mask_part = model.fill(trace.observed[rows], part, frames)
        z_full = trace.tokens[rows]
        residual = (z_part - z_full).mean(1)
        res = self.router.route(residual, self.router.score(residual), z_full.shape[1])
        logits_part, _ = model.back(z_part, mask_part, res, part, frames)
        deployed = model.router(z_part, mask_part)  # what inference will do with this partial input
        logits_deployed, _ = model.back(z_part, mask_part, deployed, part, frames)
        fea_part = deployed.clean
        fea_index, fea_weight = top_k_route(fea_part, res.index.shape[1])
        p_res = torch.zeros_like(res.scores).scatter(1, res.index, res.weight)
        p_fea = torch.zeros_like(fea_part).scatter(1, fea_index, fea_weight)
        distill = F.kl_div(F.log_softmax(fea_part, -1), F.softmax(res.clean.detach(), -1), reduction="batchmean")
        assert res.scale is not None
        self._track_hardness(part, res.index, fea_index)
        return {
            "partial_task": F.cross_entropy(logits_part, labels[rows]),
            "partial_deployed": F.cross_entropy(logits_deployed, labels[rows]),
            "residual_balance": BALANCE_WEIGHT * load_balance(res),
            "distill": DISTILL_WEIGHT * distill,
            "noise_ordering": NOISE_WEIGHT * noise_ordering(res.scale, (p_res - p_fea).abs().mean(0)),
        }

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

    def sample_partial(self, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each sample with a strict non-empty subset of its sensors, one such subset drawn
        from the combination distribution: the rows that have one and their presence ``[R, M]``."""
        self.steps += 1
        masks = presence_to_masks(present)
        combos = torch.arange(1, full_mask(self.num_sensors), device=present.device)  # incomplete ones
        strict = ((combos[None, :] & ~masks[:, None]) == 0) & (combos[None, :] != masks[:, None])
        rows = strict.any(1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return rows, present[:0]
        weights = self.combination_probs()[None, :] * strict[rows]
        drawn = combos[torch.multinomial(weights, 1).squeeze(1)]
        return rows, masks_to_presence(drawn, self.num_sensors)

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
