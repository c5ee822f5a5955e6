"""Training under sampled sensor combinations, with model selection on the validation split.

Each sample is shown under a sensor combination drawn by ``training.mask_sampling``
(:mod:`.masks`), so every combination is trained. Encoders standardise their inputs with
statistics of the training split, set before the first step. Selection uses the mean validation
accuracy over all masks, never the test split, over the epochs from ``training.select_from_epoch``
on.

The same loop runs as one process or as one of several DDP processes (:mod:`.distributed`):
batches come from the epoch plan of :mod:`edgemoe.data.loader`, which gives each rank its slice
of every global batch, from an in-memory split or from shards on disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from edgemoe.core.mask import masks_to_bits
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split
from edgemoe.data.loader import BatchLoader, MaskSampler, SampleSource, plan_epoch, steps_per_epoch
from edgemoe.model.registry import build_model
from edgemoe.model.moe import MoEModel
from edgemoe.train.checkpoint import CheckpointError, ResumeState, load_resume_state, save_checkpoint
from edgemoe.train.distributed import Cluster, DistributedModel
from edgemoe.train.evaluate import EvalTable, evaluate_masks
from edgemoe.train.masks import mask_sampler

EpochLog = Callable[[str], None]


@dataclass
class TrainResult:
    model: MoEModel
    best_epoch: int
    val_table: EvalTable
    history: list[dict[str, float]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)  # each step's loss over the global batch


STANDARDIZE_SAMPLES = 20_000  # frames per sensor that set its input statistics


def recorded_frames(train: SampleSource, sensor_names: tuple[str, ...], seed: int) -> dict[str, torch.Tensor]:
    """Up to ``STANDARDIZE_SAMPLES`` frames per sensor, from samples that recorded it (an
    in-memory or a sharded split; every rank draws the same rows from the same seed)."""
    rng = np.random.default_rng(seed)
    recorded = train.recorded(len(sensor_names))
    picked = {}
    for i, name in enumerate(sensor_names):
        rows = np.flatnonzero(masks_to_bits(recorded, len(sensor_names))[:, i])
        if rows.size > STANDARDIZE_SAMPLES:
            rows = np.sort(rng.choice(rows, STANDARDIZE_SAMPLES, replace=False))
        picked[name] = torch.from_numpy(np.ascontiguousarray(train.read(rows).frames[name]))
    return picked


def to_tensors(frames: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in frames.items()}


def torch_predictor(model: MoEModel, batch: int = 1024) -> Callable[[Mapping[str, np.ndarray], int], np.ndarray]:
    """``(frames, mask) -> probs`` over the PyTorch model, for :func:`evaluate_masks`."""
    m = model.config.num_sensors
    device = next(model.parameters()).device

    def predict(frames: Mapping[str, np.ndarray], mask: int) -> np.ndarray:
        n = next(iter(frames.values())).shape[0]
        out = []
        with torch.no_grad():
            for i in range(0, n, batch):
                part = {k: v.to(device) for k, v in to_tensors({k: v[i : i + batch] for k, v in frames.items()}).items()}
                present = torch.from_numpy(masks_to_bits(np.full(len(part[next(iter(part))]), mask), m)).to(device)
                out.append(torch.softmax(model(part, present).logits, -1).cpu().numpy())
        return np.concatenate(out)

    return predict


@dataclass
class _Best:
    score: float
    epoch: int
    state: dict[str, torch.Tensor]
    table: EvalTable


class Trainer:
    """``mask_sampler(recorded, rng) -> masks`` replaces the sensor-dropout draw (e.g. the
    random-rate setting); ``select_masks`` limits the validation masks that pick the best epoch
    (e.g. a dedicated model's own mask). ``cluster`` makes this one of several DDP processes
    (``training.batch_size`` is then the per-rank batch); ``workers`` loader processes read
    ahead; with ``checkpoint`` the main process writes a resumable checkpoint after every epoch."""

    def __init__(self, config: ModelConfig, log: EpochLog = print, progress: bool = True,
                 mask_sampler: MaskSampler | None = None, select_masks: list[int] | None = None,
                 cluster: Cluster | None = None, workers: int = 0, checkpoint: Path | None = None) -> None:
        self.config = config
        self.cluster = cluster or Cluster()
        self.log = log if self.cluster.is_main else (lambda line: None)
        self.progress = progress and self.cluster.is_main
        self.mask_sampler = mask_sampler
        self.select_masks = select_masks
        self.workers = workers
        self.checkpoint = checkpoint

    def fit(self, train: SampleSource, val: Split, resume: bool = False) -> TrainResult:
        """Train on ``train`` (an in-memory or a sharded split), select on ``val``; with
        ``resume``, continue the run whose state ``checkpoint`` holds."""
        cfg, cluster = self.config.training, self.cluster
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        model = build_model(self.config)
        model.standardize_inputs(recorded_frames(train, self.config.sensor_names, cfg.seed))
        model = model.to(cluster.device)
        sampler = self._sampler(model)
        optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        global_batch = cfg.batch_size * cluster.world_size
        per_epoch = steps_per_epoch(len(train), global_batch)
        steps = cfg.epochs * per_epoch
        sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
        history: list[dict[str, float]] = []
        best: _Best | None = None
        first = 1
        if resume:
            first, history, best = self._restore(model, optim, sched, global_batch)
        net = cluster.wrap(model)
        loader = BatchLoader(train, self.workers)
        self.log(f"{cluster.world_size} process(es) x per-rank batch {cfg.batch_size} = global batch "
                 f"{global_batch} ({cluster.backend or 'single process'}, {cluster.device}); "
                 f"{per_epoch} steps per epoch" + (f"; resuming after epoch {first - 1}" if resume else ""))
        step_losses: list[float] = []
        with self._bar(steps) as bar:
            task = bar.add_task("train", total=steps, completed=(first - 1) * per_epoch)
            for epoch in range(first, cfg.epochs + 1):
                started = time.perf_counter()
                cluster.seed(cfg.seed, epoch)
                plan = plan_epoch(train, self.config.num_sensors, sampler, cfg.seed, epoch,
                                  cfg.batch_size, cluster.world_size, cluster.rank)
                loss, acc, losses = self._epoch(net, loader.epoch(plan), optim, sched, lambda: bar.advance(task))
                step_losses += losses
                row: dict[str, float] = {"epoch": epoch, "loss": loss, "train_acc": acc}
                if epoch < cfg.select_from_epoch:
                    history.append({**row, "seconds": time.perf_counter() - started})
                    self.log(f"epoch {epoch:3d}/{cfg.epochs}  loss {loss:.4f}  train acc {acc:.4f}  "
                             f"(not validated: selection starts at epoch {cfg.select_from_epoch})")
                else:
                    best = self._validate(model, val, row, best, started)
                    history.append(row)
                self._save(model, optim, sched, epoch, history, best, global_batch)
        assert best is not None
        model.load_state_dict(best.state)
        model.eval()
        return TrainResult(model, best.epoch, best.table, history, step_losses)

    def _sampler(self, model: MoEModel) -> MaskSampler:
        """Which combination each sample is shown under: what it recorded for a method that draws
        its own partials (MARS), else the given sampler or ``training.mask_sampling``."""
        if model.samples_partials:
            return lambda recorded, rng: recorded
        cfg = self.config.training
        return self.mask_sampler or mask_sampler(cfg.mask_sampling, cfg.sensor_dropout, self.config.num_sensors)

    def _validate(self, model: MoEModel, val: Split, row: dict[str, float], best: _Best | None,
                  started: float) -> _Best:
        """Every rank validates (same weights, same table), so all agree on the best epoch."""
        model.eval()
        table = evaluate_masks(torch_predictor(model), val, self.config, "val", self.select_masks)
        row.update({"val_mean_acc": table.mean["accuracy"], "val_worst_acc": table.worst.accuracy,
                    "seconds": time.perf_counter() - started})
        self.log(f"epoch {int(row['epoch']):3d}/{self.config.training.epochs}  loss {row['loss']:.4f}  "
                 f"train acc {row['train_acc']:.4f}  val mean acc {row['val_mean_acc']:.4f}  "
                 f"worst {row['val_worst_acc']:.4f}  ({row['seconds']:.1f}s)")
        if best is None or table.mean["accuracy"] > best.score:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return _Best(table.mean["accuracy"], int(row["epoch"]), state, table)
        return best

    def _epoch(self, model: MoEModel | DistributedModel, steps: Iterable[tuple[dict[str, torch.Tensor], torch.Tensor, np.ndarray]],
               optim: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
               tick: Callable[[], None]) -> tuple[float, float, list[float]]:
        """One pass over this rank's steps; returns the loss and accuracy over all ranks, and
        each step's loss over the global batch."""
        m, device = self.config.num_sensors, self.cluster.device
        model.train()
        sums = []
        for batch_frames, batch_labels, batch_masks in steps:
            frames = {k: v.to(device, non_blocking=True) for k, v in batch_frames.items()}
            present = torch.from_numpy(masks_to_bits(batch_masks, m)).to(device)
            labels = batch_labels.to(device)
            output = model(frames, present)
            loss = model.loss(output, labels)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            self.cluster.sync_buffers(model)
            sums.append((float(loss.detach()) * len(labels), int((output.logits.argmax(1) == labels).sum()),
                         len(labels)))
            tick()
        totals = self.cluster.sum(torch.tensor(sums, dtype=torch.float64).reshape(-1, 3))
        n = float(totals[:, 2].sum())
        return float(totals[:, 0].sum()) / n, float(totals[:, 1].sum()) / n, (totals[:, 0] / totals[:, 2]).tolist()

    def _save(self, model: MoEModel, optim: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
              epoch: int, history: list[dict[str, float]], best: _Best | None, global_batch: int) -> None:
        """After every epoch (main process only): the best model so far, plus the run's state."""
        if self.checkpoint is None or not self.cluster.is_main:
            return
        weights = best.state if best is not None else model.state_dict()
        progress = {"history": history, "global_batch": global_batch,
                    "best": None if best is None else {"score": best.score, "epoch": best.epoch,
                                                       "table": best.table.to_dict()}}
        resume = ResumeState(epoch, model.state_dict(), optim.state_dict(), sched.state_dict(), progress)
        info = {"best_epoch": None if best is None else best.epoch, "seed": self.config.training.seed,
                "history": history, "epochs_done": epoch}
        save_checkpoint(model, self.checkpoint, info, resume, weights=weights)

    def _restore(self, model: MoEModel, optim: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                 global_batch: int) -> tuple[int, list[dict[str, float]], _Best | None]:
        """Load the state :meth:`_save` wrote; refuse a run with another config or global batch."""
        if self.checkpoint is None:
            raise CheckpointError("resume needs the checkpoint path the run writes (--out)")
        if not self.checkpoint.is_file():
            raise CheckpointError(f"{self.checkpoint}: nothing to resume (no checkpoint there); "
                                  "drop --resume to start a new run")
        saved, state = load_resume_state(self.checkpoint)
        if _run_settings(saved.config) != _run_settings(self.config):
            raise CheckpointError(f"{self.checkpoint}: written for another config (model/training settings "
                                  "differ); resume with the same config, or start a new run")
        if state.progress["global_batch"] != global_batch:
            raise CheckpointError(f"{self.checkpoint}: written with global batch {state.progress['global_batch']}, "
                                  f"this run has {global_batch} (per-rank batch x world size must match)")
        model.load_state_dict(state.model)
        optim.load_state_dict(state.optimizer)
        sched.load_state_dict(state.scheduler)
        found = state.progress["best"]
        best = None
        if found is not None:
            weights = {k: v.to(self.cluster.device) for k, v in saved.model.state_dict().items()}
            best = _Best(found["score"], found["epoch"], weights, EvalTable.from_dict(found["table"]))
        return state.epoch + 1, state.progress["history"], best

    def _bar(self, total: int) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} steps"), TimeRemainingColumn(),
                        disable=not self.progress, transient=True)


def _run_settings(config: ModelConfig) -> ModelConfig:
    """What must not change across a resume: all but the per-rank batch (the global batch is
    checked on its own, so the world size may change) and the thread count."""
    return config.model_copy(update={"training": config.training.model_copy(update={"batch_size": 1, "threads": 1})})
