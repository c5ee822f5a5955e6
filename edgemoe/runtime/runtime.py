"""The per-mask runtime: sensor frames in, class probabilities out, only the needed engines run.

Per frame: validate each sensor's frame (wrong shape/dtype is a caller bug and raises, naming the
sensor; NaN/Inf is a sensor fault and marks that sensor missing), derive the mask, look up its
cached plan, execute it. Everything a mask decides (the compiled plan, the sensor names, the
expected accuracy) is prepared at load, so a mask change costs dict lookups and nothing is
compiled after start. A mask with a fused engine in the bundle (a hot mask) runs its single frames
as that one engine call instead; batches always take the staged plan. An empty mask yields a
:class:`Prediction` with no class and the reason, never a made-up class.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemoe.core.batching import run_batched
from edgemoe.core.engine import Engine
from edgemoe.core.errors import FrameError
from edgemoe.core.executor import PlanExecutor
from edgemoe.core.mask import Mask, all_masks, mask_names
from edgemoe.core.plan import PlanCache, fused_stage
from edgemoe.core.signing import TrustedKey
from edgemoe.runtime.loader import EngineBundle, load_engine_bundle

ABSENT = "absent"
NON_FINITE = "nan/inf"
NO_SENSOR = "no sensor available"


@dataclass(frozen=True)
class Prediction:
    """One frame's answer. ``probs``/``label`` are None when nothing could be predicted."""

    mask: Mask
    sensors: tuple[str, ...]
    probs: np.ndarray | None
    label: int | None
    engines: tuple[str, ...]
    missing: dict[str, str] = field(default_factory=dict)  # sensor -> reason
    reason: str | None = None
    expected_accuracy: float | None = None
    latency_s: float = 0.0


class Runtime:
    """Owns a loaded, warm engine bundle and a plan per mask."""

    def __init__(self, bundle: EngineBundle) -> None:
        self.bundle = bundle
        self.config = bundle.config
        self.plans = PlanCache(bundle.layout)
        self.executor = PlanExecutor(bundle.layout, bundle.engines, bundle.max_batch, bundle.constants)
        self._specs = [(i, s.name, s.shape, np.dtype(s.dtype)) for i, s in enumerate(self.config.sensors)]
        self._known = frozenset(self.sensor_names)
        masks = all_masks(self.config.num_sensors)
        self.executor.prepare(self.plans[m] for m in masks)
        self._labels = {m: (tuple(mask_names(m, self.sensor_names)), bundle.expected_accuracy(m)) for m in masks}
        # hot masks with a fused engine: one call per frame, inputs named and shaped as the sensors
        self._fused = {m: (engine, fused_stage(m),
                           tuple((i, self.sensor_names[i], (1, *self.config.sensors[i].shape))
                                 for i in self.plans[m].present))
                       for m, engine in bundle.fused.items()}

    @classmethod
    def load(cls, path: str | Path, trust: TrustedKey | None = None) -> Runtime:
        """Load and warm the bundle at ``path``; with ``trust`` it must carry that key's signature."""
        return cls(load_engine_bundle(Path(path), trust=trust))

    @property
    def sensor_names(self) -> tuple[str, ...]:
        return self.config.sensor_names

    def infer(self, frames: Mapping[str, np.ndarray | None]) -> Prediction:
        """One frame per sensor (shape as in the schema, no batch dim); None or absent = missing."""
        started = time.perf_counter()
        batch, missing = self._collect(frames)
        mask = sum(1 << i for i in batch)
        if mask == 0:
            return Prediction(0, (), None, None, (), missing, NO_SENSOR, None, time.perf_counter() - started)
        fused = self._fused.get(mask)
        if fused is None:
            result = self.executor.run(self.plans[mask], batch)
            probs, ran = result.probs[0], result.stages_run
        else:
            probs, ran = self._run_fused(*fused, batch)
        names, accuracy = self._labels[mask]
        return Prediction(
            mask, names, probs, int(probs.argmax()), ran,
            missing, None, accuracy, time.perf_counter() - started,
        )

    @staticmethod
    def _run_fused(engine: Engine, stage: str, inputs: tuple[tuple[int, str, tuple[int, ...]], ...],
                   batch: Mapping[int, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...]]:
        """A hot mask's frame through its fused engine: copy the frames in, one call."""
        for index, name, shape in inputs:
            np.copyto(engine.input(name, shape), batch[index])
        engine.launch()
        return np.array(engine.wait()["probs"][0]), (stage,)

    @property
    def fused_masks(self) -> list[Mask]:
        """The masks whose single frames run as one fused engine call."""
        return sorted(self._fused)

    def infer_batch(self, frames: Mapping[str, np.ndarray], mask: Mask) -> np.ndarray:
        """``[N, *shape]`` frames of the sensors in ``mask`` -> ``[N, C]`` probs, in chunks of
        the bundle's max batch. For evaluation and throughput; no NaN screening."""
        return run_batched(self.executor, self.plans[mask], frames)

    def _collect(self, frames: Mapping[str, np.ndarray | None]) -> tuple[dict[int, np.ndarray], dict[str, str]]:
        unknown = frames.keys() - self._known
        if unknown:
            raise FrameError(f"unknown sensor(s) {sorted(unknown)}; schema has {list(self.sensor_names)}")
        batch: dict[int, np.ndarray] = {}
        missing: dict[str, str] = {}
        # one float64 sum per frame finds NaN/Inf (they propagate; float32 values cannot overflow it)
        for index, name, shape, dtype in self._specs:
            frame = frames.get(name)
            if frame is None:
                missing[name] = ABSENT
                continue
            if not isinstance(frame, np.ndarray) or frame.shape != shape or frame.dtype != dtype:
                found = (f"shape {list(frame.shape)} dtype {frame.dtype}" if isinstance(frame, np.ndarray)
                         else type(frame).__name__)
                raise FrameError(f"sensor '{name}': expected shape {list(shape)} dtype {dtype}, found {found}")
            if not math.isfinite(np.add.reduce(frame, axis=None, dtype=np.float64)):
                missing[name] = NON_FINITE
                continue
            batch[index] = frame[None]
        return batch, missing

    def close(self) -> None:
        self.bundle.close()
