"""Training with random sensor dropout and model selection on the validation split.

Each sample keeps all its sensors with probability ``1 - sensor_dropout``; otherwise it is shown
under a uniformly drawn non-empty mask, so every sensor combination is trained. Selection uses
the mean validation accuracy over all masks, never the test split, over the epochs from
``training.select_from_epoch`` on.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from edgemoe.core.mask import masks_to_bits
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split
from edgemoe.model.registry import build_model
from edgemoe.model.moe import MoEModel
from edgemoe.train.evaluate import EvalTable, evaluate_masks
from edgemoe.train.masks import MaskSampler, mask_sampler

EpochLog = Callable[[str], None]


@dataclass
class TrainResult:
    model: MoEModel
    best_epoch: int
    val_table: EvalTable
    history: list[dict[str, float]] = field(default_factory=list)


STANDARDIZE_SAMPLES = 20_000  # frames per sensor that set its input statistics


def recorded_frames(train: Split, sensor_names: tuple[str, ...], rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Up to ``STANDARDIZE_SAMPLES`` frames per sensor, from samples that recorded it."""
    recorded = train.recorded(len(sensor_names))
    picked = {}
    for i, name in enumerate(sensor_names):
        rows = np.flatnonzero(recorded >> i & 1)
        if rows.size > STANDARDIZE_SAMPLES:
            rows = np.sort(rng.choice(rows, STANDARDIZE_SAMPLES, replace=False))
        picked[name] = torch.from_numpy(np.ascontiguousarray(train.frames[name][rows]))
    return picked


def to_tensors(frames: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in frames.items()}


def torch_predictor(model: MoEModel, batch: int = 1024) -> Callable[[Mapping[str, np.ndarray], int], np.ndarray]:
    """``(frames, mask) -> probs`` over the PyTorch model, for :func:`evaluate_masks`."""
    m = model.config.num_sensors

    def predict(frames: Mapping[str, np.ndarray], mask: int) -> np.ndarray:
        n = next(iter(frames.values())).shape[0]
        out = []
        with torch.no_grad():
            for i in range(0, n, batch):
                part = to_tensors({k: v[i : i + batch] for k, v in frames.items()})
                present = torch.from_numpy(masks_to_bits(np.full(len(part[next(iter(part))]), mask), m))
                out.append(torch.softmax(model(part, present).logits, -1).numpy())
        return np.concatenate(out)

    return predict


class Trainer:
    """``mask_sampler(recorded, rng) -> masks`` replaces the sensor-dropout draw (e.g. the
    random-rate setting); ``select_masks`` limits the validation masks that pick the best epoch
    (e.g. a dedicated model's own mask)."""

    def __init__(self, config: ModelConfig, log: EpochLog = print, progress: bool = True,
                 mask_sampler: MaskSampler | None = None, select_masks: list[int] | None = None) -> None:
        self.config = config
        self.log = log
        self.progress = progress
        self.mask_sampler = mask_sampler
        self.select_masks = select_masks

    def fit(self, train: Split, val: Split) -> TrainResult:
        cfg = self.config.training
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        rng = np.random.default_rng(cfg.seed)
        model = build_model(self.config)
        model.standardize_inputs(recorded_frames(train, self.config.sensor_names, rng))
        optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = cfg.epochs * -(-len(train) // cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
        best: tuple[float, int, dict[str, torch.Tensor], EvalTable] | None = None
        history = []
        with self._bar(steps) as bar:
            task = bar.add_task("train", total=steps)
            for epoch in range(1, cfg.epochs + 1):
                started = time.perf_counter()
                loss, acc = self._epoch(model, train, optim, sched, rng, lambda: bar.advance(task))
                if epoch < cfg.select_from_epoch:
                    history.append({"epoch": epoch, "loss": loss, "train_acc": acc,
                                    "seconds": time.perf_counter() - started})
                    self.log(f"epoch {epoch:3d}/{cfg.epochs}  loss {loss:.4f}  train acc {acc:.4f}  "
                             f"(not validated: selection starts at epoch {cfg.select_from_epoch})")
                    continue
                model.eval()
                table = evaluate_masks(torch_predictor(model), val, self.config, "val", self.select_masks)
                row = {"epoch": epoch, "loss": loss, "train_acc": acc, "val_mean_acc": table.mean["accuracy"],
                       "val_worst_acc": table.worst.accuracy, "seconds": time.perf_counter() - started}
                history.append(row)
                self.log(f"epoch {epoch:3d}/{cfg.epochs}  loss {loss:.4f}  train acc {acc:.4f}  "
                         f"val mean acc {row['val_mean_acc']:.4f}  worst {row['val_worst_acc']:.4f}  "
                         f"({row['seconds']:.1f}s)")
                if best is None or table.mean["accuracy"] > best[0]:
                    best = (table.mean["accuracy"], epoch, copy.deepcopy(model.state_dict()), table)
        assert best is not None
        model.load_state_dict(best[2])
        model.eval()
        return TrainResult(model, best[1], best[3], history)

    def _epoch(self, model: MoEModel, train: Split, optim: torch.optim.Optimizer,
               sched: torch.optim.lr_scheduler.LRScheduler, rng: np.random.Generator,
               tick: Callable[[], None]) -> tuple[float, float]:
        cfg = self.config.training
        m = self.config.num_sensors
        model.train()
        order = rng.permutation(len(train))
        recorded = train.recorded(m)[order]
        if model.samples_partials:  # the method draws its own incomplete combinations
            masks = recorded
        else:
            sampler = self.mask_sampler or mask_sampler(cfg.mask_sampling, cfg.sensor_dropout, m)
            masks = sampler(recorded, rng)
        total_loss, correct = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            frames = to_tensors({k: v[idx] for k, v in train.frames.items()})
            present = torch.from_numpy(masks_to_bits(masks[i : i + cfg.batch_size], m))
            labels = torch.from_numpy(train.label[idx])
            output = model(frames, present)
            loss = model.loss(output, labels)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((output.logits.argmax(1) == labels).sum())
            tick()
        return total_loss / len(order), correct / len(order)

    def _bar(self, total: int) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total} steps"), TimeRemainingColumn(),
                        disable=not self.progress, transient=True)
