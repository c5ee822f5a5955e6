"""Execute a model's plans over its engines: the runtime's heart.

This is the model's forward pass as the runtime sees it: encoders of present sensors, fillers for
missing ones, cross-sensor fusion (when the model has it), the gate, top-k and dispatch (here, not inside any graph), only the experts that
received tokens, the readout (masked-mean pooling, or one slot per sensor with the missing sensors'
slots imputed after the experts) and the head. The same code drives compiled engines and the
PyTorch reference (stage modules wrapped in the engine protocol by ``edgemoe.export``), which is
what makes the parity tests meaningful. A mask with a fused engine (its whole forward in one
graph, batch 1) runs its single frames as that one call; batches take the staged plan.

The hot path is kept close to the sum of the stages' own compute:

- every mask's plan is compiled when the executor is made, into a :class:`Program` that holds the
  engines, where each sensor's tokens go and the pool divisor, so a frame does one dict lookup
  and no plan interpretation, and nothing is compiled after load;
- encoders write their tokens straight into the gate's input buffer (no token copy), and the
  experts' outputs land, grouped by expert, in one preallocated ``[T*k, D]`` buffer (one slice copy
  per expert); pooling is then a token sum plus one weighted sum of that buffer, written into the
  head's input buffer (two dot products for a batch-1 frame);
- dispatch groups the routed (token, slot) pairs by expert with one stable argsort, instead of one
  scan of the routing table per expert.
Scratch buffers are sized once for the largest batch and reused for every frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgemoe.core.engine import Engine
from edgemoe.core.errors import EngineError
from edgemoe.core.mask import Mask, absent, all_masks, full_mask
from edgemoe.core.plan import Plan, all_plans
from edgemoe.core.stages import (
    CONFIDENCE, CONTEXT, DELTA, FRAME, FUSION, GATE, HEAD, MIXED, POOLED, PROBS, SCORES, TOKEN_SENSORS, TOKENS,
    StageLayout,
    encoder_stage, expert_stage, fused_stage, imputer_stage,
)


@dataclass(frozen=True)
class ExecutionResult:
    """Class probabilities ``[B, C]`` (a copy), the stages that ran and the expert token counts."""

    probs: np.ndarray
    stages_run: tuple[str, ...]
    # [num_experts] tokens routed to each expert in this call; None from a fused engine, whose
    # routing happens inside its graph
    expert_tokens: np.ndarray | None


@dataclass(frozen=True)
class Fused:
    """A mask's fused engine: the present sensors' batch-1 frames in (inputs named as the
    sensors), class probabilities out."""

    engine: Engine
    inputs: tuple[tuple[int, str, tuple[int, ...]], ...]  # (sensor index, input name, shape)
    stages: tuple[str, ...]  # ``(fused[mask],)``


@dataclass(frozen=True)
class Program:
    """One mask's plan resolved against the loaded engines: no name lookups left per frame."""

    lead: int  # a present sensor: its frame's first dim is the batch size
    encoders: tuple[tuple[int, Engine, int, int], ...]  # (sensor, engine, first token, end token)
    constants: tuple[tuple[np.ndarray, int, int], ...]  # (stored tokens [S, D], first, end)
    imputers: tuple[tuple[str, Engine, int, int], ...]  # (stage, engine, first, end)
    context: tuple[tuple[int, int], ...]  # token ranges of present sensors, the imputers' context
    fusion: Engine | None  # cross-sensor fusion over the sample's tokens, when the model has it
    token_sensors: np.ndarray | None  # the fusion's sensor of each token, one-hot [T, M] (messages)
    gate: Engine
    experts: tuple[tuple[str, Engine], ...]
    head: Engine
    tokens: int  # tokens per sample
    front: tuple[str, ...]  # stages that always run before the experts, in order
    fused: Fused | None  # the mask's fused engine, for single frames
    # slots readout: (sensor, first token, end token) of each sensor in the token buffer; None
    # for the mean readout
    slots: tuple[tuple[int, int, int], ...] | None
    late_imputers: tuple[tuple[str, Engine, int], ...]  # (stage, engine, sensor) run after the experts


class PlanExecutor:
    """Runs every mask's compiled plan over engines named by stage. One executor per loaded
    model; not thread-safe."""

    def __init__(
        self,
        layout: StageLayout,
        engines: Mapping[str, Engine],
        max_batch: int = 1,
        constants: Mapping[str, np.ndarray] | None = None,
        fused: Mapping[Mask, Engine] | None = None,
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
            lacking = sorted({layout.sensors[i] for mask in all_masks(layout.num_sensors)
                              for i in absent(mask, layout.num_sensors)
                              if constant_key(layout.sensors[i], mask, self.constants) is None})
            if lacking:
                raise EngineError(f"filler 'constant' needs stored tokens for sensors {lacking}")
        tokens, k, d = max_batch * layout.num_sensors * layout.tokens_per_sensor, layout.top_k, layout.dim
        self._contrib = np.zeros((tokens * k, d), np.float32)  # expert outputs, grouped by expert
        self._weights = np.zeros(tokens * k, np.float32)  # confidence mixing weights, grouped order
        self._rows = np.zeros(tokens * k, np.int64)  # token row of each grouped (token, slot)
        self._ones = np.ones(tokens, np.float32)  # sums the tokens of a batch-1 frame in one dot
        # slots readout: every token's output, the token plus its weighted expert outputs
        self._mixed = np.zeros((tokens, d), np.float32) if layout.readout == "slots" else None
        self._samples = np.arange(max_batch)[:, None]  # sample index, to split rows per sample
        # per-sample routing scores pooled tokens, so tokens need a buffer of their own
        self._tokens = np.zeros((tokens, d), np.float32) if layout.route_by == "sample" else None
        self._confidence = layout.mixing == "confidence"
        fused = dict(fused or {})
        unknown = sorted(set(fused) - set(all_masks(layout.num_sensors)))
        if unknown:
            raise EngineError(f"fused engine(s) for mask(s) {unknown} outside 1..{full_mask(layout.num_sensors)}")
        self.programs: dict[Mask, Program] = {
            mask: self._compile(plan, fused.get(mask)) for mask, plan in all_plans(layout).items()
        }

    @property
    def fused_masks(self) -> list[Mask]:
        """The masks whose single frames run as one fused engine call."""
        return [mask for mask, program in self.programs.items() if program.fused is not None]

    def run(self, mask: Mask, frames: Mapping[int, np.ndarray]) -> ExecutionResult:
        """``frames`` maps (at least) each sensor of ``mask`` to a ``[B, *shape]`` float32 array;
        the frames of other sensors are not read."""
        try:
            program = self.programs[mask]
        except KeyError:
            raise EngineError(f"mask {mask} out of range 1..{full_mask(self.layout.num_sensors)}") from None
        batch = frames[program.lead].shape[0]
        if batch == 1 and program.fused is not None:
            return _run_fused(program.fused, frames)
        if not 0 < batch <= self.max_batch:
            raise EngineError(f"batch {batch} outside 1..{self.max_batch} (max_batch at load)")
        d = self.layout.dim
        n = batch * program.tokens
        flat = program.gate.input(TOKENS, (n, d)) if self._tokens is None else self._tokens[:n]
        tokens = flat.reshape(batch, program.tokens, d)
        self._encode(program, frames, tokens)
        scores = self._score(program.gate, tokens)
        ran, counts, rows, weights = self._mix(program, flat, scores)
        head = program.head
        if program.slots is None:
            self._pool(tokens, rows, weights, head.input(POOLED, (batch, d)))
        else:
            self._read_slots(program, tokens, counts, rows, weights,
                             head.input(POOLED, (batch, self.layout.readout_width)))
            ran.extend(stage for stage, _, _ in program.late_imputers)
        head.launch()
        probs = np.array(head.wait()[PROBS])
        ran.append(HEAD)
        return ExecutionResult(probs, tuple(ran), counts)

    def _compile(self, plan: Plan, fused: Engine | None) -> Program:
        layout, e = self.layout, self.engines
        s = layout.tokens_per_sensor
        first = {sensor: i * s for i, sensor in enumerate(plan.token_sensors)}
        encoders = tuple((i, e[encoder_stage(layout.sensors[i])], first[i], first[i] + s) for i in plan.present)
        constants: tuple[tuple[np.ndarray, int, int], ...] = ()
        imputers: tuple[tuple[str, Engine, int, int], ...] = ()
        late: tuple[tuple[str, Engine, int], ...] = ()
        if layout.filler == "constant":
            constants = tuple((self.constants[constant_key(layout.sensors[i], plan.mask, self.constants) or ""],
                               first[i], first[i] + s) for i in plan.filled)
        elif layout.imputes_after_experts:
            late = tuple((imputer_stage(layout.sensors[i]), e[imputer_stage(layout.sensors[i])], i)
                         for i in plan.filled)
        elif layout.filler == "imputer":
            imputers = tuple((imputer_stage(layout.sensors[i]), e[imputer_stage(layout.sensors[i])],
                              first[i], first[i] + s) for i in plan.filled)
        slots = (tuple((i, first[i], first[i] + s) for i in plan.token_sensors)
                 if layout.readout == "slots" else None)
        experts = tuple((expert_stage(x), e[expert_stage(x)]) for x in range(layout.num_experts))
        fusion = e[FUSION] if layout.fusion else None
        front = (*(encoder_stage(layout.sensors[i]) for i in plan.present), *(imp[0] for imp in imputers),
                 *((FUSION,) if layout.fusion else ()), GATE)
        return Program(
            plan.present[0], encoders, constants, imputers, tuple((first[i], first[i] + s) for i in plan.present),
            fusion, self._token_sensors(plan), e[GATE], experts, e[HEAD], len(plan.token_sensors) * s, front,
            None if fused is None else self._fused(plan, fused), slots, late,
        )

    def _token_sensors(self, plan: Plan) -> np.ndarray | None:
        """The fusion stage's ``token_sensors`` input for this mask: row t is one-hot on the
        sensor whose tokens fill slot t (present or filled), in the sequence's order."""
        if not self.layout.fusion_messages:
            return None
        onehot = np.eye(self.layout.num_sensors, dtype=np.float32)[list(plan.token_sensors)]
        return np.repeat(onehot, self.layout.tokens_per_sensor, axis=0)

    def _fused(self, plan: Plan, engine: Engine) -> Fused:
        shapes = {spec.name: tuple(int(x) for x in spec.shape) for spec in engine.inputs}
        names = [self.layout.sensors[i] for i in plan.present]
        if sorted(shapes) != sorted(names):
            raise EngineError(f"stage '{fused_stage(plan.mask)}': inputs {sorted(shapes)} are not the "
                              f"mask's sensors {names}")
        return Fused(engine, tuple((i, name, shapes[name]) for i, name in zip(plan.present, names)),
                     (fused_stage(plan.mask),))

    def _score(self, gate: Engine, tokens: np.ndarray) -> np.ndarray:
        """Gate scores per token ``[B*T, N]``. With ``route_by='sample'`` the gate scores each
        sample's mean token (input ``pooled``) and every token of the sample takes that score."""
        if self._tokens is None:  # the encoders already wrote the gate's input in place
            gate.launch()
            return gate.wait()[SCORES]
        batch, per_sample = tokens.shape[:2]
        np.mean(tokens, axis=1, out=gate.input(POOLED, (batch, self.layout.dim)))
        gate.launch()
        return np.repeat(gate.wait()[SCORES], per_sample, axis=0)

    def _encode(self, program: Program, frames: Mapping[int, np.ndarray], tokens: np.ndarray) -> None:
        """Encoders write into the gate's input buffer ``tokens`` ``[B, T, D]``; fillers after."""
        for sensor, engine, _, _ in program.encoders:
            frame = frames[sensor]
            np.copyto(engine.input(FRAME, frame.shape), frame)
            engine.launch()
        for _, engine, lo, hi in program.encoders:
            tokens[:, lo:hi] = engine.wait()[TOKENS]
        for stored, lo, hi in program.constants:
            tokens[:, lo:hi] = stored
        for _, engine, lo, hi in program.imputers:
            tokens[:, lo:hi] = self._impute(engine, tokens, program.context)
        if program.fusion is not None:  # every token of the sample attends over the others
            np.copyto(program.fusion.input(TOKENS, tokens.shape), tokens)
            if program.token_sensors is not None:  # the mask's constant, once per sample
                shape = (tokens.shape[0], *program.token_sensors.shape)
                np.copyto(program.fusion.input(TOKEN_SENSORS, shape), program.token_sensors)
            program.fusion.launch()
            tokens[...] = program.fusion.wait()[MIXED]

    @staticmethod
    def _impute(engine: Engine, tokens: np.ndarray, context: tuple[tuple[int, int], ...]) -> np.ndarray:
        """An imputer's tokens ``[B, S, D]`` for its missing sensor, refined from the token
        ranges ``context`` of ``tokens`` ``[B, T, D]`` (the present sensors')."""
        batch, d = tokens.shape[0], tokens.shape[2]
        size = sum(b - a for a, b in context)
        buf = engine.input(CONTEXT, (batch, size, d))
        at = 0
        for a, b in context:
            buf[:, at : at + b - a] = tokens[:, a:b]
            at += b - a
        engine.launch()
        return engine.wait()[TOKENS]

    def _pool(self, tokens: np.ndarray, rows: np.ndarray, weights: np.ndarray, pooled: np.ndarray) -> None:
        """The mean readout into the head's input ``pooled`` ``[B, D]``: each sample's token sum
        plus its weighted expert outputs, over its token count."""
        batch, per_sample, d = tokens.shape
        flat = tokens.reshape(-1, d)
        grouped = self._contrib[: rows.size]
        if batch == 1:  # two dot products: the token sum and the weighted expert outputs
            np.dot(self._ones[:per_sample], flat, out=pooled[0])
            pooled[0] += np.dot(weights, grouped)
        else:  # the same per sample: a [B, routed] weight matrix picks each sample's rows
            np.sum(tokens, axis=1, out=pooled)
            pick = (rows // per_sample == self._samples[:batch]) * weights
            pooled += pick @ grouped
        pooled *= 1.0 / per_sample

    def _read_slots(self, program: Program, tokens: np.ndarray, counts: np.ndarray, rows: np.ndarray,
                    weights: np.ndarray, readout: np.ndarray) -> None:
        """The slots readout into the head's input ``readout`` ``[B, M*D]``: each token's output
        (the token plus its weighted expert outputs), each sensor's slot the mean of its output
        tokens; a missing sensor's slot is imputed from every present output token by its late
        imputer, or zero."""
        batch, per_sample, d = tokens.shape
        assert self._mixed is not None, "the executor was made for the mean readout"
        mixed = self._mixed[: batch * per_sample]
        np.copyto(mixed, tokens.reshape(-1, d))
        weighted = self._contrib[: rows.size] * weights[:, None]
        lo = 0
        for count in counts.tolist():  # an expert's rows are distinct tokens: one fancy += each
            if count:
                mixed[rows[lo : lo + count]] += weighted[lo : lo + count]
                lo += count
        outputs = mixed.reshape(batch, per_sample, d)
        slots = readout.reshape(batch, self.layout.num_sensors, d)
        slots[...] = 0.0
        for sensor, first, end in program.slots or ():
            np.mean(outputs[:, first:end], axis=1, out=slots[:, sensor])
        for _, engine, sensor in program.late_imputers:
            np.mean(self._impute(engine, outputs, ((0, per_sample),)), axis=1, out=slots[:, sensor])

    def _mix(self, program: Program, flat: np.ndarray,
             scores: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Top-k, dispatch to the chosen experts; their outputs land in ``self._contrib`` grouped
        by expert (one slice copy each). Returns the stages run, the per-expert token counts, and
        for every grouped row its token row and mixing weight."""
        layout = self.layout
        k, d = layout.top_k, layout.dim
        chosen = top_k_indices(scores, k)
        routed = chosen.reshape(-1)
        order = routed.argsort(kind="stable")  # (token, slot) positions grouped by expert
        counts = np.bincount(routed, minlength=layout.num_experts)
        rows = self._rows[: order.size]
        np.floor_divide(order, k, out=rows)
        grouped = self._contrib[: order.size]
        ran = list(program.front)
        launched: list[tuple[str, Engine, slice]] = []
        lo = 0
        for (stage, engine), count in zip(program.experts, counts.tolist()):
            if count == 0:
                continue
            part = slice(lo, lo + count)
            flat.take(rows[part], axis=0, out=engine.input(TOKENS, (count, d)))
            engine.launch()
            launched.append((stage, engine, part))
            lo += count
        confidence = self._confidence
        weights = self._weights[: order.size] if confidence else top_k_softmax(scores, chosen).reshape(-1)[order]
        for stage, engine, part in launched:
            out = engine.wait()
            grouped[part] = out[DELTA]
            if confidence:
                weights[part] = out[CONFIDENCE][:, 0]
            ran.append(stage)
        return ran, counts, rows, weights


def _run_fused(fused: Fused, frames: Mapping[int, np.ndarray]) -> ExecutionResult:
    """A single frame through its mask's fused engine: copy the frames in, one call."""
    engine = fused.engine
    for index, name, shape in fused.inputs:
        np.copyto(engine.input(name, shape), frames[index])
    engine.launch()
    return ExecutionResult(np.array(engine.wait()[PROBS]), fused.stages, None)


def constant_key(sensor: str, mask: int, constants: Mapping[str, np.ndarray]) -> str | None:
    """The stored filler of ``sensor`` under ``mask``: ``sensor@mask`` if present, else ``sensor``."""
    for key in (f"{sensor}@{mask}", sensor):
        if key in constants:
            return key
    return None


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """``[T, k]`` expert indices, highest score first; ties go to the lower index (as torch.topk)."""
    return (-scores).argsort(axis=1, kind="stable")[:, :k]


def top_k_softmax(scores: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Softmax over the chosen scores only: the mixing weights of sparse top-k routing.

    ``chosen`` holds the top-k indices highest first, so the chosen scores are the k largest in
    descending order: one sort gives them (equal scores are equal values, whichever index won)."""
    k = chosen.shape[1]
    ordered = scores.copy()
    ordered.sort(axis=1)
    picked = ordered[:, : -k - 1 : -1]
    picked = picked - picked[:, :1]
    np.exp(picked, out=picked)
    picked /= picked.sum(axis=1, keepdims=True)
    return picked
