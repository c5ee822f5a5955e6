"""The per-mask runtime: sensor frames in, class probabilities out, only the needed engines run.

Two doors. :meth:`Runtime.infer` is the checked public one: it validates each sensor's frame (a
wrong shape or dtype is a caller bug and raises, naming the sensor; NaN/Inf is a sensor fault and
marks that sensor missing), derives the mask, and runs it. :meth:`Runtime.run` is the trusted one
for callers that have already validated their frames and know the mask (the daemon's
availability tracker): no checks, no name-to-index conversion, no per-frame dict. Everything a mask
decides (the compiled plan or fused engine, the sensor names, the expected accuracy) is prepared
at load, so a mask change costs a table lookup and nothing is compiled after start. An empty mask
yields a :class:`Prediction` with no class and the reason, never a made-up class.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemoe.core.batching import run_batched
from edgemoe.core.errors import FrameError
from edgemoe.core.mask import Mask, absent, all_masks, mask_names, mask_of
from edgemoe.core.signing import TrustedKey
from edgemoe.runtime.executor import PlanExecutor
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
    missing: Mapping[str, str] = field(default_factory=dict)  # sensor -> reason
    reason: str | None = None
    expected_accuracy: float | None = None
    latency_s: float = 0.0


@dataclass(frozen=True)
class _MaskFacts:
    """What a prediction reports about its mask, made once at load."""

    sensors: tuple[str, ...]
    expected_accuracy: float | None
    missing: Mapping[str, str]  # the sensors outside the mask, all absent (shared, read-only)


class Runtime:
    """Owns a loaded, warm engine bundle and every mask's compiled plan."""

    def __init__(self, bundle: EngineBundle) -> None:
        self.bundle = bundle
        self.config = bundle.config
        self.executor = PlanExecutor(bundle.layout, bundle.engines, bundle.max_batch, bundle.constants,
                                     bundle.fused)
        self._specs = [(i, s.name, s.shape, np.dtype(s.dtype)) for i, s in enumerate(self.config.sensors)]
        self._known = frozenset(self.sensor_names)
        n = self.config.num_sensors
        self._facts = {m: _MaskFacts(tuple(mask_names(m, self.sensor_names)), bundle.expected_accuracy(m),
                                     {self.sensor_names[i]: ABSENT for i in absent(m, n)})
                       for m in all_masks(n)}
        self._nothing = {name: ABSENT for name in self.sensor_names}

    @classmethod
    def load(cls, path: str | Path, trust: TrustedKey | None = None) -> Runtime:
        """Load and warm the bundle at ``path``; with ``trust`` it must carry that key's signature."""
        return cls(load_engine_bundle(Path(path), trust=trust))

    @property
    def sensor_names(self) -> tuple[str, ...]:
        return self.config.sensor_names

    @property
    def fused_masks(self) -> list[Mask]:
        """The masks whose single frames run as one fused engine call."""
        return self.executor.fused_masks

    def infer(self, frames: Mapping[str, np.ndarray | None]) -> Prediction:
        """One frame per sensor (shape as in the schema, no batch dim); None or absent = missing.
        Every frame is checked (see the module docstring)."""
        started = time.perf_counter()
        batch, missing = self._collect(frames)
        mask = mask_of(batch)
        if mask == 0:
            return Prediction(0, (), None, None, (), missing, NO_SENSOR, None, time.perf_counter() - started)
        return self._predict(mask, batch, missing, started)

    def run(self, mask: Mask, frames: Mapping[int, np.ndarray]) -> Prediction:
        """The trusted door: ``frames`` maps at least every sensor index of ``mask`` to its frame
        as a ``[1, *shape]`` array of the schema's dtype, already checked finite by the caller
        (frames of other sensors are not read). Nothing is validated here."""
        started = time.perf_counter()
        if mask == 0:
            return Prediction(0, (), None, None, (), self._nothing, NO_SENSOR, None, time.perf_counter() - started)
        return self._predict(mask, frames, self._facts[mask].missing, started)

    def _predict(self, mask: Mask, frames: Mapping[int, np.ndarray], missing: Mapping[str, str],
                 started: float) -> Prediction:
        result = self.executor.run(mask, frames)
        probs = result.probs[0]
        facts = self._facts[mask]
        return Prediction(mask, facts.sensors, probs, int(probs.argmax()), result.stages_run,
                          missing, None, facts.expected_accuracy, time.perf_counter() - started)

    def infer_batch(self, frames: Mapping[str, np.ndarray], mask: Mask) -> np.ndarray:
        """``[N, *shape]`` frames of the sensors in ``mask`` -> ``[N, C]`` probs, in chunks of
        the bundle's max batch. For evaluation and throughput; no NaN screening."""
        return run_batched(self.executor, mask, frames)

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
