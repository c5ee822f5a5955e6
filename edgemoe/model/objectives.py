"""Training objectives: losses computed from a forward's :class:`~edgemoe.model.moe.Trace`.

Each objective is a module (it may own training-only parameters, such as Conf-SMoE's probe) called
as ``objective(model, output, labels) -> {name: weighted term}``. None of them is exported and
none changes what the forward computes, so a method's deployed graphs depend only on its parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from edgemoe.model.gates import cv_squared, smooth_load
from edgemoe.model.masks import presence_to_masks
from edgemoe.model.routing import Routing

if TYPE_CHECKING:
    from edgemoe.model.moe import ModelOutput, MoEModel

Terms = dict[str, torch.Tensor]


def load_balance(routing: Routing, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``cv^2(importance) + cv^2(load)`` over the routing units that count (Shazeer et al.).

    The load is the expected count under the gate noise when there was noise (differentiable),
    the hard count otherwise (no gradient through it)."""
    gates = torch.zeros_like(routing.scores).scatter(1, routing.index, routing.weight)
    clean, scores, scale = routing.clean, routing.scores, routing.scale
    if valid is not None:
        gates, clean, scores = gates[valid], clean[valid], scores[valid]
        scale = None if scale is None else scale[valid]
    if scale is None:
        load = (gates > 0).float().sum(0)
    else:
        load = smooth_load(clean, scores, scale, routing.index.shape[1])
    return cv_squared(gates.sum(0)) + cv_squared(load)


class LoadBalance(nn.Module):
    """``weight * load_balance`` of the deployed router, over the tokens that count."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, model: MoEModel, output: ModelOutput, labels: torch.Tensor) -> Terms:
        routing = output.trace.routing
        valid = output.trace.token_mask.reshape(-1) if routing.tokens_per_unit == 1 else None
        return {"load_balance": self.weight * load_balance(routing, valid)}


class SensorProbes(nn.Module):
    """A linear probe per sensor on the mean of that sensor's own encoder tokens; ``weight`` times
    the sum over sensors of each probe's cross-entropy over the samples where it is present.

    Why: a sensor whose evidence the others duplicate on most masks gets little gradient from
    the task loss (its encoder stays lazy), yet it is all a model has on the masks where it is the
    only source of that evidence. Each probe asks every encoder, on every sample that shows it, for
    what a dedicated single-sensor model would learn. Training only: the probes are not exported."""

    def __init__(self, num_sensors: int, tokens_per_sensor: int, dim: int, num_classes: int,
                 weight: float) -> None:
        super().__init__()
        self.num_sensors, self.tokens_per_sensor, self.weight = num_sensors, tokens_per_sensor, weight
        self.probes = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(num_sensors))

    def forward(self, model: MoEModel, output: ModelOutput, labels: torch.Tensor) -> Terms:
        observed, present = output.trace.observed, output.trace.present.bool()
        pooled = observed.reshape(observed.shape[0], self.num_sensors, self.tokens_per_sensor, -1).mean(2)
        total = observed.new_zeros(())
        for sensor, probe in enumerate(self.probes):
            rows = present[:, sensor]
            if rows.any():
                total = total + F.cross_entropy(probe(pooled[rows, sensor]), labels[rows])
        return {"sensor_probes": self.weight * total}


class SoloPasses(nn.Module):
    """Each present sensor alone through the model's own deployed path: for every (sample, present
    sensor) pair, the encoder tokens already computed go through fill, fusion, router, experts and
    head with only that sensor present; ``weight`` times the sum over sensors of each one's mean
    cross-entropy (so a rarely recorded sensor weighs as much as a common one).

    Why: a probe (:class:`SensorProbes`) makes a lazy encoder carry evidence alone, but it reads a
    linear map of the encoder's normalised tokens, so it also asks every encoder to damp what no
    single sensor can use, such as a disturbance that only a pair of sensors cancels. The solo pass
    asks the same question of the graph the runtime executes when that sensor is the last one left,
    whose later stages can set such a component aside instead. All solo samples run as one batch:
    one extra pass over at most ``M`` times the batch's rows, through everything but the encoders.
    A filler that tracks its inputs while training (Conf-SMoE's running prototype) sees the
    present frames a second time: it moves toward the same mean twice per step."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, model: MoEModel, output: ModelOutput, labels: torch.Tensor) -> Terms:
        trace = output.trace
        rows, sensors = trace.present.bool().nonzero(as_tuple=True)
        if not rows.numel():
            return {"solo_passes": trace.observed.new_zeros(())}
        logits = self.logits(model, trace.frames, trace.observed, rows, sensors)
        per_sample = F.cross_entropy(logits, labels[rows], reduction="none")
        shown = torch.bincount(sensors, minlength=model.config.num_sensors)
        return {"solo_passes": self.weight * (per_sample / shown[sensors]).sum()}

    @staticmethod
    def logits(model: MoEModel, frames: Mapping[str, torch.Tensor], observed: torch.Tensor,
               rows: torch.Tensor, sensors: torch.Tensor) -> torch.Tensor:
        """Logits of sample ``rows[i]`` with only sensor ``sensors[i]`` present."""
        solo = F.one_hot(sensors, model.config.num_sensors).bool()
        solo_frames = {k: v[rows] for k, v in frames.items()}
        tokens, token_mask = model.fill(observed[rows], solo, solo_frames)
        return model.back(tokens, token_mask, model.router(tokens, token_mask), solo, solo_frames)[0]


class CombinationPull(nn.Module):
    """Flex-MoE: each sample's mean gate logits are pulled toward its combination's expert
    (``c mod N``) by a small cross-entropy."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, model: MoEModel, output: ModelOutput, labels: torch.Tensor) -> Terms:
        trace = output.trace
        b, t = trace.token_mask.shape
        logits = trace.routing.clean.reshape(b, t, -1).mean(1)
        target = presence_to_masks(trace.present) % logits.shape[1]
        return {"combination_pull": self.weight * F.cross_entropy(logits, target)}


class ConfidenceRegression(nn.Module):
    """Conf-SMoE's decoupled confidence: the routed experts' confidences regress the task
    confidence ``t_e = stopgrad(softmax(W_p E_e(x))[y])`` through a shared probe ``W_p`` trained
    with its own cross-entropy, and the gate learns to score the confident experts
    (``MSE(sigmoid(score), stopgrad(c))``), so top-k picks them without running every expert at
    inference. There is no load-balancing term: the claim is that this alone prevents collapse.

    Every term reads only the tokens that count (``token_mask``): with the slots readout a missing
    sensor's tokens are zero placeholders the runtime never routes, and regressing the gate and
    the experts' confidences on them would train both on inputs deployment never shows."""

    def __init__(self, dim: int, num_classes: int, confidence_weight: float = 1.0, gate_weight: float = 1.0) -> None:
        super().__init__()
        self.probe = nn.Linear(dim, num_classes)
        self.confidence_weight = confidence_weight
        self.gate_weight = gate_weight

    def forward(self, model: MoEModel, output: ModelOutput, labels: torch.Tensor) -> Terms:
        trace = output.trace
        combined, routing = trace.combined, trace.routing
        assert combined.confidence is not None, "confidence regression needs confidence mixing"
        units, k, d = combined.picked.shape
        unit_labels = labels.repeat_interleave(units // labels.shape[0])
        counts = (trace.token_mask.reshape(-1) if routing.tokens_per_unit == 1
                  else torch.ones_like(unit_labels, dtype=torch.bool))
        picked, weight, unit_labels = combined.picked[counts], combined.weight[counts], unit_labels[counts]
        probe_logits = self.probe(picked.reshape(-1, d))
        token_labels = unit_labels.unsqueeze(1).expand(-1, k).reshape(-1)
        target = torch.softmax(probe_logits.detach(), -1).gather(1, token_labels[:, None]).reshape(-1, k)
        return {
            "probe": F.cross_entropy(probe_logits, token_labels),
            "confidence": self.confidence_weight * F.mse_loss(weight, target),
            "gate_regression": self.gate_weight * F.mse_loss(torch.sigmoid(routing.clean[counts]),
                                                             combined.confidence[counts].detach()),
        }
