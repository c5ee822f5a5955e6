"""The one way to run many frames through a plan: chunks of the engines' maximum batch.

Evaluation (``Runtime.infer_batch``), calibration's accuracy tables and its set collection all
push ``[N, ...]`` arrays of frames through a plan executor whose engines were sized for
``max_batch`` rows; this is the loop they share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from edgemoe.core.plan import Plan, StageLayout


class _Result(Protocol):
    @property
    def probs(self) -> np.ndarray: ...


class PlanRunner(Protocol):
    """What batching needs from an executor: its layout, its batch limit and ``run``."""

    @property
    def layout(self) -> StageLayout: ...

    @property
    def max_batch(self) -> int: ...

    def run(self, plan: Plan, frames: Mapping[int, np.ndarray]) -> _Result: ...


def run_batched(executor: PlanRunner, plan: Plan, frames: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[N, *shape]`` frames of (at least) the plan's present sensors, by sensor name ->
    ``[N, C]`` class probabilities, run ``executor.max_batch`` rows at a time."""
    sensors: Sequence[str] = executor.layout.sensors
    if not plan.present:
        raise ValueError("a plan with no present sensor has nothing to run")
    n = len(frames[sensors[plan.present[0]]])
    out = np.empty((n, executor.layout.num_classes), np.float32)
    step = executor.max_batch
    for lo in range(0, n, step):
        part = {i: np.ascontiguousarray(frames[sensors[i]][lo: lo + step], np.float32) for i in plan.present}
        out[lo: lo + step] = executor.run(plan, part).probs
    return out
