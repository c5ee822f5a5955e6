"""The accuracy benchmark that ranks the missing-sensor methods.

Settings, each trained per method and seed, selected on validation, scored on test:
- ``dropout``: the trainer's sensor dropout; every test sample under every one of the 2^M-1 masks,
  with routing entropy and per-expert usage per mask (collapse is visible);
- ``rate r``: trained with the random-rate pattern at rate r; tested under the same pattern
  (>= 1 sensor kept) and with one whole sensor removed (each of the M such masks).
Per-mask dedicated models are trained once per seed (one per mask, no dropout) and scored on the
same samples. Mean +- std over seeds; accuracy, macro-F1, AUROC.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgemoe.core.mask import all_masks, full_mask, mask_label, masks_to_bits
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split
from edgemoe.train.dedicated import dedicated_config, own_mask, project_split
from edgemoe.train.evaluate import evaluate_masks, score
from edgemoe.train.trainer import Trainer, drop_cells, to_tensors, torch_predictor

Predictor = Callable[[dict[str, np.ndarray], int], np.ndarray]
METRICS = ("accuracy", "macro_f1", "auroc")
DEDICATED = "permask"


@dataclass
class BenchSettings:
    methods: tuple[str, ...] = ("smoe", "dense", "flexmoe", "confsmoe", "mars", DEDICATED)
    seeds: tuple[int, ...] = (0, 1, 2)
    rates: tuple[float, ...] = (0.1, 0.3, 0.5)
    epochs: int | None = None  # None = the config's
    train_limit: int | None = None  # cap on training samples (reduced runs)
    threads: int | None = None


@dataclass
class BenchResult:
    """``scores[method][setting][seed] = {metric: value}``; ``masks[method][seed][mask] = {...}``."""

    config: ModelConfig
    settings: BenchSettings
    scores: dict[str, dict[str, dict[int, dict[str, float]]]] = field(default_factory=dict)
    masks: dict[str, dict[int, dict[int, dict[str, float]]]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, method: str, setting: str, seed: int, values: dict[str, float]) -> None:
        self.scores.setdefault(method, {}).setdefault(setting, {})[seed] = values


def _train(config: ModelConfig, train: Split, val: Split, sampler=None, select=None) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    return Trainer(config, log=lambda line: None, progress=False, mask_sampler=sampler,
                   select_masks=select).fit(train, val).model


def routing_stats(model: torch.nn.Module, split: Split, mask: int, batch: int = 512) -> dict[str, float]:
    """Per-expert share of routed tokens, its entropy (nats) and the max share under ``mask``."""
    n, m = len(split), model.config.num_sensors
    counts = np.zeros(model.config.model.num_experts)
    with torch.no_grad():
        for i in range(0, n, batch):
            frames = to_tensors({k: v[i : i + batch] for k, v in split.frames.items()})
            present = torch.from_numpy(masks_to_bits(np.full(min(batch, n - i), mask), m))
            out = model(frames, present)
            counts += np.bincount(out.chosen[out.token_mask].reshape(-1).numpy(), minlength=counts.size)
    share = counts / max(counts.sum(), 1)
    nz = share[share > 0]
    return {"entropy": float(-(nz * np.log(nz)).sum()), "max_share": float(share.max()),
            "unused": float((share == 0).sum()), **{f"usage_{e}": float(s) for e, s in enumerate(share)}}


def score_pattern(predict: Predictor, split: Split, masks: np.ndarray, num_classes: int) -> dict[str, float]:
    """Score a per-sample mask pattern by predicting each mask's group at once."""
    probs = np.zeros((len(split), num_classes), np.float32)
    for mask in np.unique(masks):
        idx = np.flatnonzero(masks == mask)
        probs[idx] = predict(split.subset(idx).frames, int(mask))
    return dict(zip(METRICS, score(split.label, probs, num_classes)))


def dedicated_predictor(models: dict[int, torch.nn.Module]) -> Predictor:
    """``(frames, mask) -> probs`` through the model dedicated to ``mask``."""
    def predict(frames: dict[str, np.ndarray], mask: int) -> np.ndarray:
        model = models[mask]
        sub = {n: frames[n] for n in model.config.sensor_names}
        return torch_predictor(model)(sub, full_mask(model.config.num_sensors))
    return predict


def run_benchmark(config: ModelConfig, data: dict[str, Split], settings: BenchSettings,
                  log: Callable[[str], None] = print) -> BenchResult:
    started = time.perf_counter()
    result = BenchResult(config, settings)
    train = data["train"]
    if settings.train_limit:
        train = train.subset(np.arange(min(settings.train_limit, len(train))))
    test, m = data["test"], config.num_sensors
    for seed in settings.seeds:
        for method in settings.methods:
            t0 = time.perf_counter()
            cfg = _seeded(config, method, seed, settings)
            if method == DEDICATED:
                models = {c: _train(dedicated_config(cfg, c), project_split(train, cfg, c),
                                    project_split(data["val"], cfg, c), select=own_mask(dedicated_config(cfg, c)))
                          for c in all_masks(m)}
                predict = dedicated_predictor(models)
                _score_dropout(result, method, seed, predict, test, cfg, None)
                for rate in settings.rates:
                    _score_rate(result, method, seed, rate, predict, test, cfg)
            else:
                model = _train(cfg, train, data["val"])
                _score_dropout(result, method, seed, torch_predictor(model), test, cfg, model)
                for rate in settings.rates:
                    sampler = lambda rec, rng, r=rate: drop_cells(rec, r, m, rng)  # noqa: E731
                    rated = _train(cfg, train, data["val"], sampler)
                    _score_rate(result, method, seed, rate, torch_predictor(rated), test, cfg)
            log(f"seed {seed} {method}: mean acc {result.scores[method]['all masks'][seed]['accuracy']:.4f} "
                f"({time.perf_counter() - t0:.0f}s)")
    result.seconds = time.perf_counter() - started
    return result


def _seeded(config: ModelConfig, method: str, seed: int, s: BenchSettings) -> ModelConfig:
    training = {"seed": seed, **({"epochs": s.epochs} if s.epochs else {}),
                **({"threads": s.threads} if s.threads else {})}
    model = {"method": "smoe" if method == DEDICATED else method}
    return config.model_copy(update={"model": config.model.model_copy(update=model),
                                     "training": config.training.model_copy(update=training)})


def _score_dropout(result: BenchResult, method: str, seed: int, predict: Predictor, test: Split,
                   cfg: ModelConfig, model: torch.nn.Module | None) -> None:
    table = evaluate_masks(predict, test, cfg, "test")
    result.add(method, "all masks", seed, dict(table.mean) | {"worst": table.worst.accuracy})
    per_mask = result.masks.setdefault(method, {}).setdefault(seed, {})
    for row in table.rows:
        per_mask[row.mask] = {"accuracy": row.accuracy, "macro_f1": row.macro_f1, "auroc": row.auroc}
        if model is not None and model.config.model.num_experts > 1:
            per_mask[row.mask] |= routing_stats(model, test, row.mask)


def _score_rate(result: BenchResult, method: str, seed: int, rate: float, predict: Predictor,
                test: Split, cfg: ModelConfig) -> None:
    m = cfg.num_sensors
    pattern = drop_cells(test.recorded(m), rate, m, np.random.default_rng(10_000 + seed))
    result.add(method, f"rate {rate}", seed, score_pattern(predict, test, pattern, cfg.num_classes))
    removed = [full_mask(m) & ~(1 << i) for i in range(m)] if m > 1 else [full_mask(m)]
    table = evaluate_masks(predict, test, cfg, "test", removed)
    result.add(method, f"rate {rate}, one sensor removed", seed, dict(table.mean) | {
        f"-{cfg.sensor_names[i]}": table.accuracy_of(removed[i]) for i in range(len(removed))})
