"""The one way to run many frames through a mask's plan: chunks of the engines' maximum batch.

Evaluation (``Runtime.infer_batch``), calibration's accuracy tables and its set collection all
push ``[N, ...]`` arrays of frames through a plan executor whose engines were sized for
``max_batch`` rows; this is the loop they share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from edgemoe.core.mask import Mask, present
from edgemoe.core.stages import StageLayout


class _Result(Protocol):
    @property
    def probs(self) -> np.ndarray: ...


class PlanRunner(Protocol):
    """What batching needs from an executor: its layout, its batch limit and ``run``."""

    @property
    def layout(self) -> StageLayout: ...

    @property
    def max_batch(self) -> int: ...

    def run(self, mask: Mask, frames: Mapping[int, np.ndarray]) -> _Result: ...


def run_batched(executor: PlanRunner, mask: Mask, frames: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[N, *shape]`` frames of (at least) the sensors of ``mask``, by sensor name ->
    ``[N, C]`` class probabilities, run ``executor.max_batch`` rows at a time."""
    sensors: Sequence[str] = executor.layout.sensors
    here = present(mask, len(sensors))
    if not here:
        raise ValueError("an empty mask has nothing to run")
    n = len(frames[sensors[here[0]]])
    out = np.empty((n, executor.layout.num_classes), np.float32)
    step = executor.max_batch
    for lo in range(0, n, step):
        part = {i: np.ascontiguousarray(frames[sensors[i]][lo: lo + step], np.float32) for i in here}
        out[lo: lo + step] = executor.run(mask, part).probs
    return out
