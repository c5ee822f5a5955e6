"""The accuracy benchmark that ranks the missing-sensor methods.

Settings, each trained per method and seed, selected on validation, scored on test:
- ``dropout``: the trainer's sensor dropout; every test sample under every one of the 2^M-1 masks,
  with routing entropy and per-expert usage per mask (collapse is visible);
- ``rate r``: trained with the random-rate pattern at rate r; tested under the same pattern
  (>= 1 sensor kept) and with one whole sensor removed (each of the M such masks).
Per-mask dedicated models are trained once per seed (one per mask, no dropout) and scored on the
same samples. Mean +- std over seeds; accuracy, macro-F1, AUROC, and the calibration error of the
``expected_accuracy`` a bundle of each training would carry (its validation accuracy per mask)
against the test accuracy per mask.

Each training is an independent task, so ``jobs`` processes share the cores: these models are too
small for two intra-op threads to pay (one epoch: 2.1 s on 2 threads, 2.7 s on 1), and two
single-thread processes train about 1.5x as many models per minute.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
import torch

from edgemoe.core.errors import ConfigError
from edgemoe.core.mask import all_masks, full_mask, mask_of, masks_to_bits
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split
from edgemoe.data.loader import MaskSampler
from edgemoe.export.bundle import expected_accuracy
from edgemoe.train.dedicated import dedicated_config, own_mask, project_split
from edgemoe.train.evaluate import evaluate_masks, score
from edgemoe.train.masks import drop_cells
from edgemoe.train.trainer import Trainer, TrainResult, to_tensors, torch_predictor

Predictor = Callable[[dict[str, np.ndarray], int], np.ndarray]
METRICS = ("accuracy", "macro_f1", "auroc")
DEDICATED = "permask"


@dataclass
class BenchSettings:
    methods: tuple[str, ...] = ("smoe", "dense", "flexmoe", "confsmoe", "mars", DEDICATED)
    seeds: tuple[int, ...] = (0, 1, 2)
    rates: tuple[float, ...] = (0.1, 0.3, 0.5)
    # The benchmark's training budget (None = the config's). 15, not the default config's 20: the
    # full protocol at 20 epochs took 34.8 min on 2 cores (benchmarks/results/accuracy_20ep.md),
    # over its 30-minute budget.
    epochs: int | None = 15
    train_limit: int | None = None  # cap on training samples (reduced runs)
    jobs: int = 1  # trainings run in parallel, one process each
    select_late: bool = True  # validate (and select) only the second half of the epochs

    def select_from(self, epochs: int) -> int:
        """The first epoch that is validated and can be selected."""
        return epochs // 2 + 1 if self.select_late else 1


@dataclass
class BenchResult:
    """``scores[method][setting][seed] = {metric: value}``; ``masks[method][seed][mask] = {...}``."""

    config: ModelConfig
    settings: BenchSettings
    scores: dict[str, dict[str, dict[int, dict[str, float]]]] = field(default_factory=dict)
    masks: dict[str, dict[int, dict[int, dict[str, float]]]] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # summed over tasks

    def add(self, method: str, setting: str, seed: int, values: dict[str, float]) -> None:
        self.scores.setdefault(method, {}).setdefault(setting, {})[seed] = values


@dataclass(frozen=True)
class BenchTask:
    """One unit of work: a method's training for one seed and one setting (``rate=None``: the
    method's own sensor-dropout recipe, scored on every mask). The dedicated models are one task
    per seed: trained once, scored in every setting."""

    method: str
    seed: int
    rate: float | None


@dataclass
class TaskResult:
    task: BenchTask
    scores: dict[str, dict[str, float]]  # setting -> metrics
    masks: dict[int, dict[str, float]]  # per-mask rows ("all masks" setting only)
    seconds: float
    cpu_seconds: float  # the worker's CPU time: what the task costs on an idle core


def _train(config: ModelConfig, train: Split, val: Split, sampler: MaskSampler | None = None,
           select: list[int] | None = None) -> TrainResult:
    return Trainer(config, log=lambda line: None, progress=False, mask_sampler=sampler,
                   select_masks=select).fit(train, val)


def expected_by_mask(results: dict[int, TrainResult] | TrainResult) -> dict[int, float]:
    """The accuracy a bundle exported from this training attaches to each mask's predictions
    (its ``expected_accuracy``): one model's validation table, or each dedicated model's own."""
    if isinstance(results, TrainResult):
        return dict(expected_accuracy(results.val_table).masks)
    return {mask: float(expected_accuracy(r.val_table).mean["accuracy"]) for mask, r in results.items()}


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


def plan_tasks(settings: BenchSettings) -> list[BenchTask]:
    """Every task, the longest first (the dedicated models, then the imputing method) so a
    parallel run does not end waiting on one long straggler."""
    tasks = []
    for seed in settings.seeds:
        for method in settings.methods:
            rates = (None,) if method == DEDICATED else (None, *settings.rates)
            tasks += [BenchTask(method, seed, rate) for rate in rates]
    cost = {DEDICATED: 4, "confsmoe": 3, "mars": 2}
    return sorted(tasks, key=lambda t: -cost.get(t.method.split("+")[0], 1) - ("+fusion" in t.method))


def run_task(task: BenchTask, config: ModelConfig, data: dict[str, Split], settings: BenchSettings,
             threads: int) -> TaskResult:
    """Train and score one task; what a worker process runs."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    cfg = _seeded(config, task.method, task.seed, settings, threads)
    train, test, m = data["train"], data["test"], cfg.num_sensors
    scores: dict[str, dict[str, float]] = {}
    masks: dict[int, dict[str, float]] = {}
    if task.method == DEDICATED:
        trained = {}
        for c in all_masks(m):
            sub = dedicated_config(cfg, c)
            trained[c] = _train(sub, project_split(train, cfg, c), project_split(data["val"], cfg, c),
                                select=own_mask(sub))
        predict = dedicated_predictor({c: r.model for c, r in trained.items()})
        _score_all_masks(scores, masks, predict, test, cfg, None, expected_by_mask(trained))
        for rate in settings.rates:
            _score_rate(scores, task.seed, rate, predict, test, cfg)
    elif task.rate is None:
        result = _train(cfg, train, data["val"])
        _score_all_masks(scores, masks, torch_predictor(result.model), test, cfg, result.model,
                         expected_by_mask(result))
    else:
        sampler = lambda rec, rng, r=task.rate: drop_cells(rec, r, m, rng)
        model = _train(cfg, train, data["val"], sampler).model
        _score_rate(scores, task.seed, task.rate, torch_predictor(model), test, cfg)
    return TaskResult(task, scores, masks, time.perf_counter() - t0, time.process_time() - cpu0)


def run_benchmark(config: ModelConfig, data: dict[str, Split], settings: BenchSettings,
                  log: Callable[[str], None] = print) -> BenchResult:
    """Run every task (``settings.jobs`` processes, the cores split between them) and gather the
    results in a fixed order, so the report does not depend on which task finished first."""
    started = time.perf_counter()
    if settings.train_limit:
        train = data["train"]
        data = {**data, "train": train.subset(np.arange(min(settings.train_limit, len(train))))}
    tasks = plan_tasks(settings)
    jobs = max(1, min(settings.jobs, len(tasks)))
    threads = max(1, config.training.threads // jobs)
    done: dict[BenchTask, TaskResult] = {}

    def finished(r: TaskResult) -> None:
        done[r.task] = r
        rate = "own recipe" if r.task.rate is None else f"rate {r.task.rate}"
        log(f"[{len(done)}/{len(tasks)}] seed {r.task.seed} {r.task.method} ({rate}): {r.seconds:.0f}s")

    if jobs == 1:
        for task in tasks:
            finished(run_task(task, config, data, settings, threads))
    else:
        context = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = [pool.submit(run_task, t, config, data, settings, threads) for t in tasks]
            for future in as_completed(futures):
                finished(future.result())
    result = BenchResult(config, settings)
    _gather(result, done, settings)
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = sum(r.cpu_seconds for r in done.values())
    return result


def _gather(result: BenchResult, done: dict[BenchTask, TaskResult], settings: BenchSettings) -> None:
    order = ["all masks"] + [f"rate {r}{suffix}" for r in settings.rates for suffix in ("", ", one sensor removed")]
    for method in settings.methods:
        for seed in settings.seeds:
            parts = [r for t, r in done.items() if t.method == method and t.seed == seed]
            scores = {k: v for r in parts for k, v in r.scores.items()}
            for setting in order:
                result.add(method, setting, seed, scores[setting])
            result.masks.setdefault(method, {})[seed] = next(r.masks for r in parts if r.task.rate is None)


SOLO_WEIGHT = 0.2  # `+solo`: the weight whose worst regime closes the most headroom (docs/methods.md)

# ``method+option`` variants: the same method with a part or a training rule switched on.
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "fusion": ("model", {"fusion": "attention"}),  # cross-sensor fusion stage
    "fusion2": ("model", {"fusion": "attention", "fusion_layers": 2}),  # two attention blocks
    "nomessages": ("model", {"fusion_messages": False}),  # the fusion stage without sensor messages
    "uniform": ("training", {"mask_sampling": "uniform"}),  # every combination trained equally
    "probes": ("training", {"sensor_probe_weight": 1.0}),  # a probe per sensor on its own tokens
    "solo": ("training", {"solo_pass_weight": SOLO_WEIGHT}),  # each sensor alone through the model
    "slots": ("model", {"readout": "slots"}),  # the head reads one slot per sensor
    "pooled": ("model", {"readout": "mean"}),  # the head reads the mean token (confsmoe: impute first)
}


def _seeded(config: ModelConfig, method: str, seed: int, s: BenchSettings, threads: int) -> ModelConfig:
    epochs = s.epochs or config.training.epochs
    base, *options = method.split("+")
    training: dict[str, object] = {"seed": seed, "epochs": epochs, "threads": threads,
                                   "select_from_epoch": s.select_from(epochs)}
    model: dict[str, object] = {"method": "smoe" if base == DEDICATED else base}
    for option in options:
        if option not in VARIANTS:
            raise ConfigError(f"method '{method}': unknown option '{option}' (known: {sorted(VARIANTS)})")
        part, update = VARIANTS[option]
        (model if part == "model" else training).update(update)
    return config.model_copy(update={"model": config.model.model_copy(update=model),
                                     "training": config.training.model_copy(update=training)})


def _score_all_masks(scores: dict[str, dict[str, float]], masks: dict[int, dict[str, float]],
                     predict: Predictor, test: Split, cfg: ModelConfig, model: torch.nn.Module | None,
                     expected: dict[int, float]) -> None:
    """Every mask's test scores, the accuracy the bundle would promise for it (``expected``), and
    routing for a routed model. ``calibration_error``: mean over masks of |expected - test|."""
    table = evaluate_masks(predict, test, cfg, "test")
    for row in table.rows:
        masks[row.mask] = {"accuracy": row.accuracy, "macro_f1": row.macro_f1, "auroc": row.auroc,
                           "expected": expected.get(row.mask, float("nan"))}
        if model is not None and model.config.model.num_experts > 1:
            masks[row.mask] |= routing_stats(model, test, row.mask)
    error = np.nanmean([abs(v["expected"] - v["accuracy"]) for v in masks.values()])
    scores["all masks"] = dict(table.mean) | {"worst": table.worst.accuracy, "calibration_error": float(error)}


def _score_rate(scores: dict[str, dict[str, float]], seed: int, rate: float, predict: Predictor,
                test: Split, cfg: ModelConfig) -> None:
    m = cfg.num_sensors
    pattern = drop_cells(test.recorded(m), rate, m, np.random.default_rng(10_000 + seed))
    scores[f"rate {rate}"] = score_pattern(predict, test, pattern, cfg.num_classes)
    removed = [mask_of(j for j in range(m) if j != i) for i in range(m)] if m > 1 else [full_mask(m)]
    table = evaluate_masks(predict, test, cfg, "test", removed)
    scores[f"rate {rate}, one sensor removed"] = dict(table.mean) | {
        f"-{cfg.sensor_names[i]}": table.accuracy_of(removed[i]) for i in range(len(removed))}
