"""The sharded dataset format: splits larger than RAM, read through memory maps.

A sharded dataset is a directory::

    dataset.json                        the index (format, sensors, splits, shards, sha256 of every file)
    train/shard-00000/camera.npy        [n, *frame_shape] float32, one file per sensor
    train/shard-00000/label.npy         [n] int64
    train/shard-00000/mask.npy          [n, M] uint8, column i = sensor i was recorded
    train/shard-00001/...
    val/...  test/...

Every file is a plain ``.npy`` array, so a reader maps it (``np.load(mmap_mode="r")``) and copies
only the rows a batch needs: memory stays bounded by a few open shards, whatever the split's size.
The checks and error messages are those of the ``.npz`` format (:mod:`edgemoe.data.dataset`),
naming the shard file instead of the archive. The one way to write this format is
:class:`ShardWriter` (``edgemoe data pack`` uses it): it validates every chunk, hashes every file
and renames the finished directory into place, so a failed write never leaves half a dataset.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ValidationError

from edgemoe.core.bundle import sha256_file, staged_directory
from edgemoe.core.config import StrictModel, describe
from edgemoe.core.errors import DatasetError
from edgemoe.core.mask import masks_to_bits
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import (
    SPLIT_NAMES,
    SampleBatch,
    Split,
    check_frame_layout,
    check_labels,
    check_mask,
    load_dataset,
    load_split,
    zero_unrecorded,
)

FORMAT = "edgemoe-shards/1"
INDEX = "dataset.json"
OPEN_SHARDS = 2  # maps kept open per process: the shard being read and the one before it


class FileEntry(StrictModel):
    shape: tuple[int, ...]
    dtype: str
    sha256: str


class ShardEntry(StrictModel):
    path: str  # relative to the dataset directory
    samples: int
    files: dict[str, FileEntry]


class SplitEntry(StrictModel):
    samples: int
    shards: tuple[ShardEntry, ...]


class SensorEntry(StrictModel):
    name: str
    shape: tuple[int, ...]
    dtype: str


class ShardIndex(StrictModel):
    """``dataset.json``: enough to check every file's layout without opening it."""

    format: Literal["edgemoe-shards/1"]
    sensors: tuple[SensorEntry, ...]
    splits: dict[str, SplitEntry]


def is_sharded(directory: Path) -> bool:
    return (Path(directory) / INDEX).is_file()


def read_index(directory: Path) -> ShardIndex:
    path = Path(directory) / INDEX
    if not path.is_file():
        raise DatasetError(f"{directory}: no {INDEX} (write a sharded dataset with 'edgemoe data pack')")
    try:
        return ShardIndex.model_validate_json(path.read_text())
    except ValidationError as exc:  # invalid JSON or a field that does not fit, each named
        raise DatasetError(f"{path}: {describe(exc)}") from None


def _check_schema(index: ShardIndex, config: ModelConfig, directory: Path) -> None:
    """The index must declare exactly the config's sensors, in its bit order."""
    found = [(s.name, tuple(s.shape), s.dtype) for s in index.sensors]
    want = [(s.name, tuple(s.shape), s.dtype) for s in config.sensors]
    if found != want:
        raise DatasetError(f"{directory / INDEX}: sensors {found} do not match config '{config.name}' "
                           f"sensors {want} (names, shapes, dtypes and order must agree)")


# -- reading --------------------------------------------------------------------------------------

class ShardedSplit:
    """One split over its shards: the :class:`~edgemoe.data.loader.SampleSource` of a sharded
    dataset. Labels and masks are checked on open; frames are mapped per shard when first read,
    after their sha256 is checked once in this process; at most :data:`OPEN_SHARDS` stay mapped,
    so resident memory does not grow with the split. Picklable (DataLoader workers reopen maps)."""

    def __init__(self, directory: Path, name: str, entry: SplitEntry, config: ModelConfig) -> None:
        self.directory = Path(directory)
        self.name = name
        self.entry = entry
        self.config = config
        sizes = [s.samples for s in entry.shards]
        self._ends = np.cumsum(sizes)
        self._starts = self._ends - np.asarray(sizes)
        self._maps: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._verified: set[tuple[int, str]] = set()
        # the recorded masks of the whole split, 2 bytes a sample: the epoch plan draws from them
        self._recorded = np.concatenate([self._open_labels_and_masks(k).astype(np.uint16)
                                         for k in range(len(sizes))])
        for k in range(len(sizes)):
            self._check_headers(k)

    def __len__(self) -> int:
        return int(self.entry.samples)

    @property
    def shard_sizes(self) -> tuple[int, ...]:
        return tuple(s.samples for s in self.entry.shards)

    def recorded(self, num_sensors: int) -> np.ndarray:
        return self._recorded

    def read(self, index: np.ndarray) -> SampleBatch:
        """Copy samples ``index`` (global ids) out of their shards; unrecorded cells zeroed."""
        index = np.asarray(index, np.int64)
        frames = {s.name: np.empty((len(index), *s.shape), np.float32) for s in self.config.sensors}
        label = np.empty(len(index), np.int64)
        shard_of = np.searchsorted(self._ends, index, side="right")
        for k in np.unique(shard_of):
            picked = np.flatnonzero(shard_of == k)
            rows = index[picked] - self._starts[k]
            order = np.argsort(rows, kind="stable")  # ascending rows read the map front to back
            picked, rows = picked[order], rows[order]
            arrays = self._arrays(int(k))
            masks = self._recorded[index[picked]].astype(np.int64)
            label[picked] = arrays["label"][rows]
            for bit, spec in enumerate(self.config.sensors):
                where = self._file(int(k), f"{spec.name}.npy")
                frames[spec.name][picked] = zero_unrecorded(where, spec, arrays[spec.name][rows], masks, bit, rows)
        return SampleBatch(frames, label)

    def to_split(self) -> Split:
        """The whole split in memory (validation and test splits are small)."""
        batch = self.read(np.arange(len(self)))
        return Split(batch.frames, batch.label, self._recorded.astype(np.int64))

    def verify(self) -> None:
        """Check the sha256 of every file of every shard (``edgemoe data check``)."""
        for k, shard in enumerate(self.entry.shards):
            for name in shard.files:
                self._verify_file(k, name)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = OrderedDict()
        return state

    # -- internals -------------------------------------------------------------------------------
    def _file(self, k: int, name: str) -> Path:
        return self.directory / self.entry.shards[k].path / name

    def _entry(self, k: int, name: str) -> FileEntry:
        files = self.entry.shards[k].files
        if name not in files:
            raise DatasetError(f"{self.directory / INDEX}: shard '{self.entry.shards[k].path}' lists no "
                               f"'{name}' (expected {[f'{s}.npy' for s in self.config.sensor_names]}, "
                               "'label.npy', 'mask.npy')")
        return files[name]

    def _verify_file(self, k: int, name: str) -> None:
        if (k, name) in self._verified:
            return
        path, want = self._file(k, name), self._entry(k, name).sha256
        if not path.is_file():
            raise DatasetError(f"{path}: file not found (listed in {self.directory / INDEX})")
        actual = sha256_file(path)
        if actual != want:
            raise DatasetError(f"{path}: sha256 mismatch (index {want[:12]}…, file {actual[:12]}…): the "
                               "file was modified or corrupted; pack the dataset again")
        self._verified.add((k, name))

    def _load(self, k: int, name: str, mmap: bool) -> np.ndarray:
        path = self._file(k, name)
        if not path.is_file():
            raise DatasetError(f"{path}: file not found (listed in {self.directory / INDEX})")
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable .npy array ({exc})") from None

    def _open_labels_and_masks(self, k: int) -> np.ndarray:
        n = self.entry.shards[k].samples
        for name in ("label.npy", "mask.npy"):
            self._entry(k, name)
            self._verify_file(k, name)
        label = check_labels(self._file(k, "label.npy"), self._load(k, "label.npy", mmap=False),
                             self.config.num_classes)
        if len(label) != n:
            raise DatasetError(f"{self._file(k, 'label.npy')}: {len(label)} labels but the index says "
                               f"{n} samples")
        return check_mask(self._file(k, "mask.npy"), self._load(k, "mask.npy", mmap=False), n, self.config)

    def _check_headers(self, k: int) -> None:
        """Shapes and dtypes of every frame file, read from the ``.npy`` header (no data read)."""
        n = self.entry.shards[k].samples
        for spec in self.config.sensors:
            name = f"{spec.name}.npy"
            self._entry(k, name)
            frame = self._load(k, name, mmap=True)
            check_frame_layout(self._file(k, name), spec, frame.shape, frame.dtype, n)

    def _arrays(self, k: int) -> dict[str, np.ndarray]:
        if k in self._maps:
            self._maps.move_to_end(k)
            return self._maps[k]
        names = [f"{s.name}.npy" for s in self.config.sensors] + ["label.npy"]
        for name in names:
            self._verify_file(k, name)
        self._maps[k] = {name[:-4]: self._load(k, name, mmap=True) for name in names}
        while len(self._maps) > OPEN_SHARDS:
            self._maps.popitem(last=False)  # dropping the last reference unmaps the shard
        return self._maps[k]


def open_sharded(directory: Path, config: ModelConfig,
                 splits: tuple[str, ...] = SPLIT_NAMES) -> dict[str, ShardedSplit]:
    """Open ``splits`` of a sharded dataset, checking the index, the schema and every header."""
    directory = Path(directory)
    index = read_index(directory)
    _check_schema(index, config, directory)
    missing = [s for s in splits if s not in index.splits]
    if missing:
        raise DatasetError(f"{directory / INDEX}: no split {missing} (has {sorted(index.splits)})")
    return {name: ShardedSplit(directory, name, index.splits[name], config) for name in splits}


# -- writing --------------------------------------------------------------------------------------

class ShardWriter:
    """Append samples split by split in chunks of any size; shards of ``shard_size`` samples are
    written as they fill. Use as a context manager: the dataset appears at ``out`` only when the
    block completes, with its index; an error leaves nothing behind."""

    def __init__(self, out: Path, config: ModelConfig, shard_size: int, overwrite: bool = False) -> None:
        if shard_size < 1:
            raise DatasetError(f"shard size must be at least 1 sample, got {shard_size}")
        self.out = Path(out)
        self.config = config
        self.shard_size = shard_size
        self.overwrite = overwrite
        self._pending: dict[str, list[Split]] = {}
        self._shards: dict[str, list[ShardEntry]] = {}
        self._chunks = 0

    def __enter__(self) -> ShardWriter:
        self._staging = staged_directory(self.out, self.overwrite)
        self._root = self._staging.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._staging.__exit__(type(error), error, error.__traceback__)
                raise
        return self._staging.__exit__(exc_type, exc, tb)

    def _finish(self) -> None:
        for split in list(self._pending):
            self._flush(split, final=True)
        index = ShardIndex(
            format=FORMAT,
            sensors=tuple(SensorEntry(name=s.name, shape=s.shape, dtype=s.dtype) for s in self.config.sensors),
            splits={name: SplitEntry(samples=sum(s.samples for s in shards), shards=tuple(shards))
                    for name, shards in self._shards.items()},
        )
        (self._root / INDEX).write_text(index.model_dump_json(indent=2) + "\n")

    def add(self, split: str, chunk: Split) -> None:
        """Validate ``chunk`` against the schema (the ``.npz`` checks) and queue it."""
        self._chunks += 1
        where = f"chunk {self._chunks} (split '{split}')"
        label = check_labels(where, chunk.label, self.config.num_classes)
        m = self.config.num_sensors
        recorded = check_mask(where, masks_to_bits(chunk.recorded(m), m), len(label), self.config)
        frames = {}
        for bit, spec in enumerate(self.config.sensors):
            if spec.name not in chunk.frames:
                raise DatasetError(f"{where}: missing frames for sensor '{spec.name}'")
            frame = chunk.frames[spec.name]
            check_frame_layout(where, spec, frame.shape, frame.dtype, len(label))
            frames[spec.name] = zero_unrecorded(where, spec, frame, chunk.mask, bit)
        self._pending.setdefault(split, []).append(Split(frames, label, recorded))
        self._flush(split, final=False)

    def _flush(self, split: str, final: bool) -> None:
        queued = self._pending[split]
        while sum(len(c) for c in queued) >= self.shard_size or (final and queued):
            merged = _concat(queued, self.config)
            head = merged.subset(np.arange(min(self.shard_size, len(merged))))
            queued[:] = [merged.subset(np.arange(len(head), len(merged)))] if len(merged) > len(head) else []
            self._write_shard(split, head)

    def _write_shard(self, split: str, part: Split) -> None:
        shards = self._shards.setdefault(split, [])
        rel = f"{split}/shard-{len(shards):05d}"
        folder = self._root / rel
        folder.mkdir(parents=True)
        arrays = {s.name: np.ascontiguousarray(part.frames[s.name], np.float32) for s in self.config.sensors}
        arrays["label"] = part.label.astype(np.int64)
        arrays["mask"] = masks_to_bits(part.recorded(self.config.num_sensors), self.config.num_sensors).astype(np.uint8)
        files = {}
        for name, array in arrays.items():
            path = folder / f"{name}.npy"
            np.save(path, array, allow_pickle=False)
            files[path.name] = FileEntry(shape=array.shape, dtype=str(array.dtype), sha256=sha256_file(path))
        shards.append(ShardEntry(path=rel, samples=len(part), files=files))


def _concat(parts: list[Split], config: ModelConfig) -> Split:
    if len(parts) == 1:
        return parts[0]
    frames = {n: np.concatenate([p.frames[n] for p in parts]) for n in config.sensor_names}
    return Split(frames, np.concatenate([p.label for p in parts]),
                 np.concatenate([p.recorded(config.num_sensors) for p in parts]))


def pack_npz(source: Path, out: Path, config: ModelConfig, shard_size: int,
             splits: Iterable[str] = SPLIT_NAMES, overwrite: bool = False) -> dict[str, int]:
    """Convert an ``.npz`` dataset directory (checked as on load) into shards; returns samples per split."""
    with ShardWriter(out, config, shard_size, overwrite) as writer:
        for name in splits:
            writer.add(name, load_split(Path(source) / f"{name}.npz", config))
    return {name: len(open_split) for name, open_split in open_sharded(out, config, tuple(splits)).items()}


def open_any(directory: Path, config: ModelConfig,
             splits: tuple[str, ...] = SPLIT_NAMES) -> Mapping[str, Split | ShardedSplit]:
    """Either format: sharded when ``directory`` has a ``dataset.json``, else ``.npz`` files."""
    if is_sharded(directory):
        return open_sharded(directory, config, splits)
    return load_dataset(directory, config, splits)
