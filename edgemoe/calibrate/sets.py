"""Calibration sets: per stage, the input tensors the deployed model fed that stage.

A set is ``{stage: {input name: [rows, ...] float32}}``. Its identity is a content hash over
names, dtypes, shapes and bytes (not over the ``.npz`` file, whose zip headers carry timestamps),
recorded with every variant it produced so an engine can be traced back to its samples.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgemoe.core.engine import TensorSpec
from edgemoe.core.errors import EdgeMoEError

StageSet = dict[str, np.ndarray]
CalibrationSets = dict[str, StageSet]
SEP = "::"


class CalibrationError(EdgeMoEError):
    """A calibration set or quantized variant is unusable; the message names the stage."""


def content_sha256(stage_set: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(stage_set):
        array = np.ascontiguousarray(stage_set[name])
        digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def sets_sha256(sets: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """One hash for all stages: the hash of the sorted per-stage hashes."""
    joined = "".join(f"{stage}={content_sha256(sets[stage])};" for stage in sorted(sets))
    return hashlib.sha256(joined.encode()).hexdigest()


def check_stage_set(stage: str, stage_set: Mapping[str, np.ndarray] | None, inputs: tuple[TensorSpec, ...],
                    min_samples: int) -> int:
    """Refuse an empty, too small or wrongly shaped set, naming the stage; return its rows."""
    fix = "re-run 'edgemoe calibrate' with more frames (recipe draw_frames/max_frames) or a dataset that covers it"
    if not stage_set:
        raise CalibrationError(f"stage '{stage}': calibration set is empty; {fix}")
    rows: set[int] = set()
    for spec in inputs:
        if spec.name not in stage_set:
            raise CalibrationError(f"stage '{stage}': calibration set lacks input '{spec.name}' "
                                   f"(has {sorted(stage_set)}); {fix}")
        array = np.asarray(stage_set[spec.name])
        if array.ndim != len(spec.shape) or any(
                isinstance(want, int) and want != got for want, got in zip(spec.shape, array.shape)):
            raise CalibrationError(f"stage '{stage}' input '{spec.name}': calibration samples have shape "
                                   f"{list(array.shape)} but the stage takes {list(spec.shape)}")
        if not np.isfinite(array).all():
            raise CalibrationError(f"stage '{stage}' input '{spec.name}': calibration samples hold NaN/Inf")
        rows.add(int(array.shape[0]))
    if len(rows) != 1:
        raise CalibrationError(f"stage '{stage}': inputs disagree on the number of samples {sorted(rows)}")
    (count,) = rows
    if count == 0:
        raise CalibrationError(f"stage '{stage}': calibration set is empty; {fix}")
    if count < min_samples:
        raise CalibrationError(f"stage '{stage}': calibration set has {count} samples, fewer than the "
                               f"recipe's min_samples={min_samples}; {fix}")
    return count


def save_sets(sets: Mapping[str, Mapping[str, np.ndarray]], path: Path) -> str:
    """Write all stages into one ``.npz`` (atomically) and return the content hash."""
    arrays = {f"{stage}{SEP}{name}": np.asarray(a, np.float32) for stage, s in sets.items() for name, a in s.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sets_sha256(sets)


def load_sets(path: Path) -> CalibrationSets:
    if not Path(path).is_file():
        raise CalibrationError(f"calibration set file not found: {path}")
    sets: CalibrationSets = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            stage, _, name = key.partition(SEP)
            sets.setdefault(stage, {})[name] = data[key]
    return sets
