"""Collect calibration sets as the deployed model sees its stages.

Routing-aware (the default): frames are drawn from a split, sensors are dropped with the
deployment's missing-sensor statistics, and the fp32 engines run through the real
:class:`PlanExecutor`. A :class:`RecordingEngine` around each engine copies the inputs the
executor binds, so an encoder sees only frames of present sensors, the gate the tokens of the
masks that occur, and each expert only the tokens the gate routes to it. An expert that is rarely
chosen keeps the collection going: rounds of fresh frames and masks are drawn until every expert
has ``min_tokens_per_expert`` routed tokens (or ``max_frames`` is reached, which is an error
naming the expert). Other stages keep a random ``samples_per_stage`` subset of what they saw.

Naive (the baseline it is compared with): full-sensor frames for encoders, gate and head, and
standard-normal random tokens for every expert, as if routing did not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgemoe.calibrate.recipe import CalibrationRecipe
from edgemoe.calibrate.sets import CalibrationError, CalibrationSets
from edgemoe.calibrate.variants import VariantEngines
from edgemoe.core.batching import run_batched
from edgemoe.core.engine import Engine, TensorSpec
from edgemoe.core.mask import bits_to_masks, full_mask
from edgemoe.core.stages import expert_stage
from edgemoe.data.dataset import Split


class RecordingEngine:
    """Wraps an engine; on every ``launch`` keeps a copy of the inputs bound for that run."""

    def __init__(self, inner: Engine, sink: list[dict[str, np.ndarray]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.inputs: tuple[TensorSpec, ...] = inner.inputs
        self.outputs: tuple[TensorSpec, ...] = inner.outputs
        self.sink = sink
        self._bound: dict[str, np.ndarray] = {}

    def input(self, name: str, shape: Sequence[int]) -> np.ndarray:
        buffer = self.inner.input(name, shape)
        self._bound[name] = buffer
        return buffer

    def launch(self) -> None:
        self.sink.append({k: v.copy() for k, v in self._bound.items()})
        self.inner.launch()

    def wait(self) -> Mapping[str, np.ndarray]:
        return self.inner.wait()

    def warmup(self) -> None:
        self.inner.warmup()

    def close(self) -> None:
        self.inner.close()


@dataclass
class CollectionReport:
    """What the collection saw: frames drawn, masks used, tokens each expert was routed."""

    method: str
    rounds: int = 0
    frames: int = 0
    mask_counts: dict[int, int] = field(default_factory=dict)
    routed_tokens: dict[str, int] = field(default_factory=dict)  # expert -> tokens seen in all rounds
    kept: dict[str, int] = field(default_factory=dict)  # stage -> rows in the saved set

    def to_dict(self) -> dict[str, object]:
        return {"method": self.method, "rounds": self.rounds, "frames": self.frames,
                "mask_counts": {str(k): v for k, v in sorted(self.mask_counts.items())},
                "routed_tokens": self.routed_tokens, "kept": self.kept}


def draw_masks(rng: np.random.Generator, n: int, rates: Sequence[float]) -> np.ndarray:
    """``[n]`` masks: each sensor missing with its rate, independently; never the empty mask
    (a frame with no sensor is redrawn, as the runtime answers it without running any stage)."""
    masks = np.zeros(n, np.int64)
    todo = np.arange(n)
    while todo.size:
        present = rng.random((todo.size, len(rates))) >= np.asarray(rates)
        masks[todo] = bits_to_masks(present)
        todo = todo[masks[todo] == 0]
    return masks


def collect_routing_aware(variants: VariantEngines, split: Split, recipe: CalibrationRecipe
                          ) -> tuple[CalibrationSets, CollectionReport]:
    layout = variants.layout
    rates = recipe.missing_rates(layout.sensors)
    recorded = split.recorded(layout.num_sensors)
    rng = np.random.default_rng(recipe.seed)
    sinks: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in layout.stage_names()}
    executor = variants.executor(wrap={s: _recorder(sinks[s]) for s in sinks})
    report = CollectionReport("routing-aware")
    experts = [expert_stage(e) for e in range(layout.num_experts)]
    while True:
        index = rng.integers(0, len(split), recipe.draw_frames)
        masks = draw_masks(rng, index.size, rates) & recorded[index]  # never use an unrecorded cell
        keep = masks != 0
        index, masks = index[keep], masks[keep]
        for mask in np.unique(masks):
            rows = index[masks == mask]
            run_batched(executor, int(mask), split.subset(rows).frames)
            report.mask_counts[int(mask)] = report.mask_counts.get(int(mask), 0) + int(rows.size)
        report.rounds += 1
        report.frames += int(index.size)
        counts = {e: sum(len(r["tokens"]) for r in sinks[e]) for e in experts}
        short = [e for e in experts if counts[e] < recipe.min_tokens_per_expert]
        enough = all(_rows(_most_frequent_shape(sinks[s])) >= recipe.samples_per_stage
                     for s in sinks if s not in experts)
        if not short and enough:
            break
        if report.frames >= recipe.max_frames:
            if short:
                raise CalibrationError(
                    f"stage '{short[0]}': the gate routed only {counts[short[0]]} tokens to it in "
                    f"{report.frames} frames (min_tokens_per_expert={recipe.min_tokens_per_expert}; "
                    f"all experts: {counts}); raise max_frames in the recipe or lower the minimum")
            break
    report.routed_tokens = {e: sum(len(r["tokens"]) for r in sinks[e]) for e in experts}
    sets = {stage: _subsample(records, recipe.samples_per_stage, rng) for stage, records in sinks.items()}
    report.kept = {stage: _set_rows(s) for stage, s in sets.items()}
    return sets, report


def collect_naive(variants: VariantEngines, split: Split, recipe: CalibrationRecipe
                  ) -> tuple[CalibrationSets, CollectionReport]:
    """Full-sensor frames everywhere, random standard-normal tokens for every expert."""
    layout = variants.layout
    rng = np.random.default_rng(recipe.seed)
    experts = {expert_stage(e) for e in range(layout.num_experts)}
    sinks: dict[str, list[dict[str, np.ndarray]]] = {s: [] for s in layout.stage_names() if s not in experts}
    executor = variants.executor(wrap={s: _recorder(sinks[s]) for s in sinks})
    recorded = split.recorded(layout.num_sensors)
    full = full_mask(layout.num_sensors)
    usable = np.flatnonzero(recorded == full)
    index = rng.choice(usable, min(usable.size, recipe.samples_per_stage), replace=False)
    run_batched(executor, full, split.subset(index).frames)
    sets = {stage: _subsample(records, recipe.samples_per_stage, rng) for stage, records in sinks.items()}
    for stage in sorted(experts):
        sets[stage] = {"tokens": rng.standard_normal((recipe.samples_per_stage, layout.dim)).astype(np.float32)}
    context = layout.max_dims(1).get("context")
    for stage in [s for s in sinks if s.startswith("imputer[")]:  # never run with every sensor present
        shape = (recipe.samples_per_stage, context, layout.dim)
        sets[stage] = {"context": rng.standard_normal(shape).astype(np.float32)}
    report = CollectionReport("naive", rounds=1, frames=int(index.size), mask_counts={full: int(index.size)},
                              routed_tokens={s: recipe.samples_per_stage for s in sorted(experts)})
    report.kept = {stage: _set_rows(s) for stage, s in sets.items()}
    return sets, report


Collector = Callable[[VariantEngines, Split, CalibrationRecipe], tuple[CalibrationSets, CollectionReport]]
COLLECTORS: dict[str, Collector] = {"routing-aware": collect_routing_aware, "naive": collect_naive}


def _recorder(sink: list[dict[str, np.ndarray]]) -> Callable[[Engine], Engine]:
    return lambda engine: RecordingEngine(engine, sink)


def _rows(records: list[dict[str, np.ndarray]]) -> int:
    return sum(len(next(iter(r.values()))) for r in records if r)


def _set_rows(stage_set: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(stage_set.values()))) if stage_set else 0


def _most_frequent_shape(records: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The recorded runs whose inputs have the most frequent per-row shapes: what a set keeps of
    a stage whose input size depends on the mask (the collection counts these rows, not all)."""
    records = [r for r in records if r]
    signature = [tuple(v.shape[1:] for v in r.values()) for r in records]
    common = max(set(signature), key=signature.count, default=None)
    return [r for r, sig in zip(records, signature) if sig == common]


def _subsample(records: list[dict[str, np.ndarray]], limit: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Concatenate a stage's recorded runs and keep a random ``limit`` rows (all inputs alike).

    A stage whose input size depends on the mask (an imputer's ``context`` and the fusion stage's
    sequence grow with the number of present sensors) is recorded at several shapes; a set holds
    one shape per input, so only the runs of the most frequent shape are kept (the stage's weights
    and activation ranges are the same whatever the length)."""
    records = _most_frequent_shape(records)
    if not records:
        return {}
    joined = {name: np.concatenate([r[name] for r in records], 0) for name in records[0]}
    n = len(next(iter(joined.values())))
    if n > limit:
        pick = np.sort(rng.choice(n, limit, replace=False))
        joined = {k: v[pick] for k, v in joined.items()}
    return {k: np.ascontiguousarray(v, np.float32) for k, v in joined.items()}
