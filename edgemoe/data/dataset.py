"""The on-disk dataset format and its loader.

A dataset is a directory with ``train.npz``, ``val.npz`` and ``test.npz``. Each file holds:

- one array per sensor, named exactly as in the model config, shape ``[N, *frame_shape]``,
  dtype float32 (other float dtypes are cast on load, with a warning);
- ``label``: ``[N]`` integer class ids in ``0 .. num_classes-1``;
- optional ``mask``: ``[N, M]`` bool/uint8, column ``i`` = sensor ``i`` of the config was recorded
  for that sample. Frames of unrecorded cells may hold anything (NaN included); they are zeroed
  on load and never used. Every sample must have at least one recorded sensor.

Files are plain ``np.savez`` archives, loaded with ``allow_pickle=False``. The loader rejects a
bad file with an error that names the file, the sensor and what was expected and found.
"""

from __future__ import annotations

import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemoe.core.errors import DatasetError
from edgemoe.core.mask import bits_to_masks, full_mask, masks_to_bits
from edgemoe.core.schema import ModelConfig, SensorSpec

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class SampleBatch:
    """Frames and labels of some samples, as read from a split (unrecorded cells zeroed)."""

    frames: dict[str, np.ndarray]
    label: np.ndarray


@dataclass
class Split:
    """One split in memory. ``mask`` is ``[N]`` int masks of recorded sensors (None = all)."""

    frames: dict[str, np.ndarray]
    label: np.ndarray
    mask: np.ndarray | None

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def recorded(self, num_sensors: int) -> np.ndarray:
        if self.mask is None:
            return np.full(len(self), full_mask(num_sensors), np.int64)
        return self.mask

    @property
    def shard_sizes(self) -> tuple[int, ...]:
        """An in-memory split is one shard (see :mod:`edgemoe.data.loader`)."""
        return (len(self),)

    def read(self, index: np.ndarray) -> SampleBatch:
        """The frames and labels of samples ``index`` (the :class:`SampleSource` protocol)."""
        return SampleBatch({k: v[index] for k, v in self.frames.items()}, self.label[index])

    def to_split(self) -> Split:
        """Already in memory (a sharded split reads itself in; see ``ShardedSplit.to_split``)."""
        return self

    def subset(self, index: np.ndarray) -> Split:
        mask = None if self.mask is None else self.mask[index]
        return Split({k: v[index] for k, v in self.frames.items()}, self.label[index], mask)


def save_split(split: Split, path: Path, sensor_names: tuple[str, ...] | None = None) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a file."""
    arrays = dict(split.frames)
    arrays["label"] = split.label.astype(np.int64)
    if split.mask is not None:
        names = sensor_names or tuple(split.frames)
        bits = (split.mask[:, None] >> np.arange(len(names))) & 1
        arrays["mask"] = bits.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_split(path: Path, config: ModelConfig) -> Split:
    """Load and validate one split file against the schema."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (expected one of {SPLIT_NAMES} .npz)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc})") from None
    with archive:
        keys = set(archive.files)
        if "label" not in keys:
            raise DatasetError(f"{path}: missing array 'label'")
        label = check_labels(path, archive["label"], config.num_classes)
        mask = check_mask(path, archive["mask"], len(label), config) if "mask" in keys else None
        frames = {}
        for i, spec in enumerate(config.sensors):
            if spec.name not in keys:
                raise DatasetError(f"{path}: missing array for sensor '{spec.name}' (expected shape "
                                   f"[{len(label)}, {', '.join(map(str, spec.shape))}] {spec.dtype})")
            frame = cast_float_frames(path, spec, archive[spec.name], len(label))
            check_frame_layout(path, spec, frame.shape, frame.dtype, len(label))
            frames[spec.name] = zero_unrecorded(path, spec, frame, mask, i)
    extra = keys - {"label", "mask", *config.sensor_names}
    if extra:
        raise DatasetError(f"{path}: unknown arrays {sorted(extra)} (schema sensors: "
                           f"{list(config.sensor_names)}, plus 'label' and optional 'mask')")
    return Split(frames, label, mask)


def load_dataset(directory: Path, config: ModelConfig, splits: tuple[str, ...] = SPLIT_NAMES) -> dict[str, Split]:
    if not directory.is_dir():
        raise DatasetError(f"dataset directory not found: {directory}")
    return {name: load_split(directory / f"{name}.npz", config) for name in splits}


# -- checks shared by every on-disk format (``where`` is the file or shard named in errors) ---------

def check_labels(where: Path | str, label: np.ndarray, num_classes: int) -> np.ndarray:
    """``label`` as int64, or an error naming the first bad sample."""
    if label.ndim != 1 or not np.issubdtype(label.dtype, np.integer):
        raise DatasetError(f"{where}: 'label' must be a 1-D integer array, found shape "
                           f"{list(label.shape)} dtype {label.dtype}")
    if label.size == 0:
        raise DatasetError(f"{where}: 'label' is empty")
    bad = np.flatnonzero((label < 0) | (label >= num_classes))
    if bad.size:
        raise DatasetError(f"{where}: label {int(label[bad[0]])} at sample {int(bad[0])} out of range "
                           f"0..{num_classes - 1} ({bad.size} such samples)")
    return np.asarray(label, np.int64)


def check_mask(where: Path | str, raw: np.ndarray, n: int, config: ModelConfig) -> np.ndarray:
    """``[n, M]`` 0/1 columns -> ``[n]`` int masks; every sample keeps at least one sensor."""
    m = config.num_sensors
    if raw.shape != (n, m) or not (raw.dtype == np.bool_ or np.issubdtype(raw.dtype, np.integer)):
        raise DatasetError(f"{where}: 'mask' expected shape [{n}, {m}] bool/uint8 (columns "
                           f"{list(config.sensor_names)}), found shape {list(raw.shape)} dtype {raw.dtype}")
    if not np.isin(raw, (0, 1)).all():
        raise DatasetError(f"{where}: 'mask' must hold only 0/1")
    masks = bits_to_masks(np.asarray(raw).astype(bool))
    empty = np.flatnonzero(masks == 0)
    if empty.size:
        raise DatasetError(f"{where}: sample {int(empty[0])} has no recorded sensor in 'mask' "
                           f"({empty.size} such samples)")
    return masks


def cast_float_frames(where: Path | str, spec: SensorSpec, frame: np.ndarray, n: int) -> np.ndarray:
    """Frames of the right shape in another float precision (numpy's float64 default) are cast to
    the schema's dtype with a warning rather than refused."""
    if (frame.shape == (n, *spec.shape) and frame.dtype != np.dtype(spec.dtype)
            and np.issubdtype(frame.dtype, np.floating)):
        warnings.warn(f"{where}: sensor '{spec.name}' is {frame.dtype}, cast to {spec.dtype} on load "
                      f"(store {spec.dtype} to skip the cast)", stacklevel=3)
        return frame.astype(spec.dtype)
    return frame


def check_frame_layout(where: Path | str, spec: SensorSpec, shape: tuple[int, ...], dtype: np.dtype,
                       n: int) -> None:
    """The frames of sensor ``spec`` must be ``[n, *spec.shape]`` of the schema's dtype."""
    want = (n, *spec.shape)
    if tuple(shape) != want or np.dtype(dtype) != np.dtype(spec.dtype):
        raise DatasetError(f"{where}: sensor '{spec.name}' expected shape {list(want)} dtype {spec.dtype}, "
                           f"found shape {list(shape)} dtype {dtype}")


def zero_unrecorded(where: Path | str, spec: SensorSpec, frame: np.ndarray, mask: np.ndarray | None,
                    bit: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Refuse NaN/Inf in recorded frames; zero the unrecorded ones (they may hold anything).
    ``rows`` numbers the samples in errors when ``frame`` holds only some rows of a file."""
    n = frame.shape[0]
    recorded = np.ones(n, bool) if mask is None else masks_to_bits(mask, bit + 1)[:, bit]
    finite = np.isfinite(frame.reshape(n, -1)).all(axis=1)
    bad = np.flatnonzero(recorded & ~finite)
    if bad.size:
        raise DatasetError(f"{where}: sensor '{spec.name}' has NaN/Inf at sample "
                           f"{int(bad[0] if rows is None else rows[bad[0]])} "
                           f"({bad.size} samples); mark such cells missing in 'mask' instead")
    if mask is not None:
        frame = np.where(recorded.reshape(-1, *[1] * len(spec.shape)), frame, 0).astype(np.float32)
    return frame
