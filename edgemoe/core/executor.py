"""Execute a :class:`~edgemoe.core.plan.Plan` over a set of engines.

This is the model's forward pass as the runtime sees it: encoders of present sensors, fillers for
missing ones, the gate, top-k and dispatch (here, not inside any graph), only the experts that
received tokens, masked-mean pooling and the head. The same code drives compiled engines and the
PyTorch reference (stage modules wrapped in the engine protocol), which is what makes the parity
tests meaningful. Buffers are sized once for the largest batch and reused for every frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgemoe.core.engine import Engine
from edgemoe.core.errors import EngineError
from edgemoe.core.mask import all_masks
from edgemoe.core.plan import Plan, StageLayout


@dataclass(frozen=True)
class ExecutionResult:
    """Class probabilities ``[B, C]`` (a copy), the stages that ran and the expert token counts."""

    probs: np.ndarray
    stages_run: tuple[str, ...]
    expert_tokens: np.ndarray  # [num_experts] tokens routed to each expert in this call


class PlanExecutor:
    """Runs plans over engines named by stage. One executor per loaded model; not thread-safe."""

    def __init__(
        self,
        layout: StageLayout,
        engines: Mapping[str, Engine],
        max_batch: int = 1,
        constants: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        missing = [s for s in layout.stage_names() if s not in engines]
        if missing:
            raise EngineError(f"no engine loaded for stage(s) {missing}")
        self.layout = layout
        self.engines = dict(engines)
        self.max_batch = max_batch
        # sensor name -> [S, D] filler tokens; ``sensor@mask`` overrides it for one mask (a bank
        # with one filler per sensor combination)
        self.constants = dict(constants or {})
        if layout.filler == "constant":
            absent = sorted({layout.sensors[i] for mask in all_masks(layout.num_sensors)
                             for i in range(layout.num_sensors) if not mask >> i & 1
                             and constant_key(layout.sensors[i], mask, self.constants) is None})
            if absent:
                raise EngineError(f"filler 'constant' needs stored tokens for sensors {absent}")
        s, d = layout.tokens_per_sensor, layout.dim
        self._tokens = np.zeros((max_batch, layout.num_sensors * s, d), np.float32)
        self._mixed = np.zeros((max_batch * layout.num_sensors * s, d), np.float32)

    def run(self, plan: Plan, frames: Mapping[int, np.ndarray]) -> ExecutionResult:
        """``frames`` maps each present sensor index to a ``[B, *shape]`` float32 array."""
        batch = next(iter(frames.values())).shape[0] if frames else 0
        if not 0 < batch <= self.max_batch:
            raise EngineError(f"batch {batch} outside 1..{self.max_batch} (max_batch at load)")
        ran: list[str] = []
        tokens = self._encode(plan, frames, batch, ran)
        flat = tokens.reshape(batch * tokens.shape[1], self.layout.dim)
        mixed, counts = self._mix(plan, flat, batch, ran)
        pooled = mixed.reshape(batch, -1, self.layout.dim).mean(axis=1)
        head = self.engines[plan.head]
        np.copyto(head.input("pooled", pooled.shape), pooled)
        head.launch()
        probs = np.array(head.wait()["probs"])
        ran.append(plan.head)
        return ExecutionResult(probs, tuple(ran), counts)

    def _encode(
        self, plan: Plan, frames: Mapping[int, np.ndarray], batch: int, ran: list[str]
    ) -> np.ndarray:
        s = self.layout.tokens_per_sensor
        tokens = self._tokens[:batch, : plan.tokens_per_sample * s]
        slot = {sensor: i for i, sensor in enumerate(plan.token_sensors)}
        for sensor, stage in zip(plan.present, plan.encoders):
            engine = self.engines[stage]
            np.copyto(engine.input("frame", frames[sensor].shape), frames[sensor])
            engine.launch()
        for sensor, stage in zip(plan.present, plan.encoders):
            k = slot[sensor]
            tokens[:, k * s : (k + 1) * s] = self.engines[stage].wait()["tokens"]
            ran.append(stage)
        for sensor, how in plan.fillers:
            k = slot[sensor]
            if how == "constant":
                key = constant_key(self.layout.sensors[sensor], plan.mask, self.constants)
                tokens[:, k * s : (k + 1) * s] = self.constants[key]  # type: ignore[index]
            else:
                self._impute(how, tokens, plan, slot, k, ran)
        return tokens

    def _impute(
        self, stage: str, tokens: np.ndarray, plan: Plan, slot: dict[int, int], k: int, ran: list[str]
    ) -> None:
        """An imputer refines its missing sensor's tokens from the present sensors' tokens."""
        s = self.layout.tokens_per_sensor
        context = np.concatenate([tokens[:, slot[i] * s : (slot[i] + 1) * s] for i in plan.present], 1)
        engine = self.engines[stage]
        np.copyto(engine.input("context", context.shape), context)
        engine.launch()
        tokens[:, k * s : (k + 1) * s] = engine.wait()["tokens"]
        ran.append(stage)

    def _mix(self, plan: Plan, flat: np.ndarray, batch: int, ran: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Gate, top-k, dispatch to the chosen experts, weighted residual sum."""
        layout = self.layout
        chosen, weights = self._route(plan, flat, batch, ran)
        mixed = self._mixed[: flat.shape[0]]
        np.copyto(mixed, flat)
        counts = np.zeros(layout.num_experts, np.int64)
        routed: list[tuple[str, np.ndarray, np.ndarray]] = []
        for e, stage in enumerate(plan.experts):
            rows, slots = np.nonzero(chosen == e)
            counts[e] = rows.size
            if rows.size == 0:
                continue
            engine = self.engines[stage]
            np.take(flat, rows, axis=0, out=engine.input("tokens", (rows.size, layout.dim)))
            engine.launch()
            routed.append((stage, rows, weights[rows, slots]))
        for stage, rows, w in routed:
            out = self.engines[stage].wait()
            if layout.mixing == "confidence":
                w = out["confidence"][:, 0]
            mixed[rows] += w[:, None] * out["delta"]
            ran.append(stage)
        return mixed, counts

    def _route(self, plan: Plan, flat: np.ndarray, batch: int, ran: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Top-k experts and softmax weights per token. ``route_by='sample'`` scores each
        sample's mean token (input ``pooled``) once and gives all its tokens that choice."""
        gate = self.engines[plan.gate]
        if self.layout.route_by == "sample":
            per_sample = flat.shape[0] // batch
            pooled = flat.reshape(batch, per_sample, self.layout.dim).mean(axis=1)
            np.copyto(gate.input("pooled", pooled.shape), pooled)
        else:
            np.copyto(gate.input("tokens", flat.shape), flat)
        gate.launch()
        scores = gate.wait()["scores"]
        ran.append(plan.gate)
        chosen = top_k_indices(scores, self.layout.top_k)
        weights = top_k_softmax(scores, chosen)
        if self.layout.route_by == "sample":
            chosen = np.repeat(chosen, per_sample, axis=0)
            weights = np.repeat(weights, per_sample, axis=0)
        return chosen, weights


def constant_key(sensor: str, mask: int, constants: Mapping[str, np.ndarray]) -> str | None:
    """The stored filler of ``sensor`` under ``mask``: ``sensor@mask`` if present, else ``sensor``."""
    for key in (f"{sensor}@{mask}", sensor):
        if key in constants:
            return key
    return None


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """``[T, k]`` expert indices, highest score first; ties go to the lower index (as torch.topk)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def top_k_softmax(scores: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Softmax over the chosen scores only: the mixing weights of sparse top-k routing."""
    picked = np.take_along_axis(scores, chosen, axis=1)
    picked = np.exp(picked - picked.max(axis=1, keepdims=True))
    return picked / picked.sum(axis=1, keepdims=True)
