"""One training process among ``world_size``: torchrun's environment, DDP wrapping, buffer sync.

``torchrun`` (``python -m torch.distributed.run``) starts the processes and sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :meth:`Cluster.from_env`
reads them and joins the process group: NCCL with one GPU per process where CUDA is available,
gloo on CPU. Without those variables it is the single process of today, and nothing changes.

The models keep state outside their parameters that DDP would otherwise get wrong:

- buffers updated in ``forward`` (MARS's per-combination hardness EMA and step counter,
  Conf-SMoE's running raw-frame means). DDP's default broadcasts rank 0's buffers before every
  forward, which throws away what the other ranks saw. Instead buffers are not broadcast, and
  after every optimiser step floating buffers are averaged over the ranks (an EMA of the mean
  is the mean of the EMAs when they start equal: the single-process update over the global
  batch) and integer ones (counters, equal on every rank) are taken from rank 0;
- parameters that only training uses (MARS's residual router; the gate noise when it is off),
  and parameters used only by ``loss`` (Conf-SMoE's probe). DDP finds unused parameters by
  walking the autograd graph back from ``forward``'s output; walked from there, the probe looks
  unused, is marked ready early and then receives a gradient ("marked ready twice").
  :class:`DistributedModel` therefore walks the graph from the loss: ``forward`` runs DDP's
  pre-forward step only, and ``loss`` hands the loss to DDP's post-forward step, which walks
  everything the step used, in ``forward`` or in ``loss``. Static-graph mode was measured to
  diverge from one process after the first step with parameters that never get gradients,
  so it is not used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

M = TypeVar("M", bound=nn.Module)


class DistributedModel(DistributedDataParallel):
    """DDP whose unused-parameter search starts from the loss (see the module docstring), with
    the model's own ``loss`` reachable, so the training step reads the same with and without
    DDP: ``output = model(frames, present); loss = model.loss(output, labels)``. Built on DDP's
    ``_pre_forward``/``_post_forward``, the two halves of its own ``forward`` (torch 2.x)."""

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        inputs, kwargs = self._pre_forward(*inputs, **kwargs)
        with self._inside_ddp_forward():
            return self.module(*inputs, **kwargs)

    def loss(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = self.module.loss(*args, **kwargs)
        if not torch.is_grad_enabled():
            return loss
        return self._post_forward(loss)


@dataclass(frozen=True)
class Cluster:
    """Where this process stands: ``rank`` of ``world_size``, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: one process, no process group

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and progress bars."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    @classmethod
    def from_env(cls) -> Cluster:
        """Join the process group torchrun describes, or stay a single process."""
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            return cls()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group(backend)
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, backend)

    def close(self) -> None:
        """Leave the process group once every rank is done with it. Without the barrier a fast rank
        tore its group down while a slow one (a loaded machine) still finished its last collective,
        and gloo aborted the process (SIGABRT, 'terminate called without an active exception')."""
        if self.backend is not None and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def wrap(self, model: M) -> M | DistributedModel:
        """DDP over ``model`` when there are several processes (it broadcasts rank 0's weights)."""
        if self.world_size == 1:
            return model
        ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedModel(model, device_ids=ids, broadcast_buffers=False, find_unused_parameters=True)

    def sync_buffers(self, model: nn.Module) -> None:
        """Floating buffers: mean over ranks; integer buffers: rank 0's (see the module docstring)."""
        if self.world_size == 1:
            return
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, dist.ReduceOp.SUM)
                buffer.div_(self.world_size)
            else:
                dist.broadcast(buffer, 0)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over ranks (for the logged loss and accuracy of the whole step)."""
        if self.world_size > 1:
            values = values.to(self.device)
            dist.all_reduce(values, dist.ReduceOp.SUM)
        return values.cpu()

    def seed(self, seed: int, epoch: int) -> None:
        """Seed the sampling done inside the model (noisy gating, MARS's per-sample combinations)
        per rank and per epoch: ranks draw differently, a resumed run draws as the original."""
        torch.manual_seed(int(np.random.SeedSequence([seed, epoch, self.rank]).generate_state(1)[0]))
