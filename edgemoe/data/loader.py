"""Which samples each training step reads, on each rank, and the loader that reads them.

The epoch plan is a function of ``(seed, epoch)`` only, never of the rank or the world size:

1. the sample order: shards in a shuffled order, rows shuffled within each shard (reads stay
   local to one or two mapped shards, unlike a global permutation of a split larger than RAM);
2. a training mask per sample, drawn once over that order (what every rank computes alike);
3. global batches of ``per_rank_batch * world_size`` consecutive samples, rank ``r`` taking the
   ``r``-th slice of each (the split ``DistributedSampler`` makes: no sample on two ranks).

So every sample gets its own mask draw, ranks never share sensor drops, and one process with the
global batch size reads exactly the samples (and masks) of a step that all ranks read together:
the property the distributed equivalence test relies on. A last partial global batch is padded
from the start of the order to a multiple of the world size, as ``DistributedSampler`` pads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edgemoe.data.dataset import SampleBatch

MaskSampler = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class SampleSource(Protocol):
    """What training reads: an in-memory :class:`~edgemoe.data.dataset.Split` or a
    :class:`~edgemoe.data.shards.ShardedSplit`."""

    def __len__(self) -> int: ...

    @property
    def shard_sizes(self) -> tuple[int, ...]: ...

    def recorded(self, num_sensors: int) -> np.ndarray: ...

    def read(self, index: np.ndarray) -> SampleBatch: ...


@dataclass(frozen=True)
class EpochPlan:
    """One rank's steps of one epoch: ``index[j]`` (global sample ids) and ``masks[j]``."""

    index: list[np.ndarray]
    masks: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.index)


def sample_order(shard_sizes: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Shards in a random order, each one's rows shuffled: a shard-local shuffle."""
    starts = np.concatenate([[0], np.cumsum(shard_sizes)[:-1]]).astype(np.int64)
    return np.concatenate([starts[k] + rng.permutation(shard_sizes[k])
                           for k in rng.permutation(len(shard_sizes))])


def steps_per_epoch(samples: int, global_batch: int) -> int:
    return -(-samples // global_batch)


def plan_epoch(source: SampleSource, num_sensors: int, sampler: MaskSampler, seed: int, epoch: int,
               per_rank_batch: int, world_size: int = 1, rank: int = 0) -> EpochPlan:
    """This rank's slice of the epoch's global batches (see the module docstring). Steps are
    views into one order and one mask array: about 10 bytes per sample of the split."""
    rng = np.random.default_rng([seed, epoch])
    order = sample_order(source.shard_sizes, rng)
    masks = draw_masks(source.recorded(num_sensors), order, sampler, rng)
    global_batch = per_rank_batch * world_size
    index, chosen = [], []
    for start in range(0, len(order), global_batch):
        size = min(global_batch, len(order) - start)
        share = -(-size // world_size)
        mine: slice | np.ndarray
        if share * world_size == size:
            mine = slice(start + rank * share, start + (rank + 1) * share)
        else:  # the last step: pad by wrapping to the start of the order, as DistributedSampler does
            mine = (start + np.arange(rank * share, (rank + 1) * share)) % len(order)
        index.append(order[mine])
        chosen.append(masks[mine])
    return EpochPlan(index, chosen)


def draw_masks(recorded: np.ndarray, order: np.ndarray, sampler: MaskSampler, rng: np.random.Generator,
               chunk: int = 1 << 16) -> np.ndarray:
    """The training mask of every sample in ``order``, drawn chunk by chunk along it (bounded
    temporaries), stored as ``uint16`` (masks have at most 16 bits)."""
    masks = np.empty(len(order), np.uint16)
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        masks[start : start + len(part)] = sampler(recorded[part].astype(np.int64), rng)
    return masks


class _StepSampler(Sampler[np.ndarray]):
    """Yields the current plan's index arrays; the loader's workers read them in order."""

    def __init__(self) -> None:
        self.plan: EpochPlan | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        assert self.plan is not None, "set_plan() before iterating"
        return iter(self.plan.index)

    def __len__(self) -> int:
        return 0 if self.plan is None else len(self.plan)


class _Reads(Dataset):
    def __init__(self, source: SampleSource) -> None:
        self.source = source

    def __getitem__(self, index: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = self.source.read(index)
        return ({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.frames.items()},
                torch.from_numpy(batch.label))


class BatchLoader:
    """Reads a plan's steps in order, with ``workers`` processes reading ahead (0: in this
    process, the right choice for an in-memory split). Workers persist across epochs, so each
    maps and checks a shard at most once per run."""

    def __init__(self, source: SampleSource, workers: int = 0, prefetch: int = 2) -> None:
        self._sampler = _StepSampler()
        self._loader = DataLoader(_Reads(source), sampler=self._sampler, batch_size=None,
                                  num_workers=workers, worker_init_fn=_one_thread,
                                  persistent_workers=workers > 0, prefetch_factor=prefetch if workers else None)

    def epoch(self, plan: EpochPlan) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor, np.ndarray]]:
        """``(frames, labels, masks)`` per step of ``plan``."""
        self._sampler.plan = plan
        for (frames, labels), masks in zip(self._loader, plan.masks, strict=True):
            yield frames, labels, masks


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # readers copy arrays; the training process owns the cores
