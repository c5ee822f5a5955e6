"""Accuracy per sensor mask: every test sample under every one of the 2^M - 1 masks.

The predictor is any callable ``(frames, mask) -> probs``, so the same table is computed for the
PyTorch model, the engine runtime, or a quantized variant.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from edgemoe.core.mask import all_masks, mask_names
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split

Predictor = Callable[[Mapping[str, np.ndarray], int], np.ndarray]


@dataclass
class MaskScore:
    mask: int
    sensors: list[str]
    n: int
    accuracy: float
    macro_f1: float
    auroc: float


@dataclass
class EvalTable:
    split: str
    rows: list[MaskScore]

    @property
    def mean(self) -> dict[str, float]:
        keys = ("accuracy", "macro_f1", "auroc")
        return {k: float(np.mean([getattr(r, k) for r in self.rows])) for k in keys}

    @property
    def worst(self) -> MaskScore:
        return min(self.rows, key=lambda r: r.accuracy)

    def accuracy_of(self, mask: int) -> float:
        return next(r.accuracy for r in self.rows if r.mask == mask)

    def to_dict(self) -> dict[str, object]:
        return {"split": self.split, "masks": [asdict(r) for r in self.rows], "mean": self.mean}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> EvalTable:
        rows = [MaskScore(**r) for r in data["masks"]]  # type: ignore[union-attr]
        return cls(str(data["split"]), rows)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))


def score(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> tuple[float, float, float]:
    """Accuracy, macro-F1 and AUROC (see :func:`auroc`)."""
    pred = probs.argmax(1)
    acc = float((pred == labels).mean())
    f1 = float(f1_score(labels, pred, average="macro", labels=np.arange(num_classes), zero_division=0))
    return acc, f1, auroc(labels, probs)


def auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary: the AUROC of the positive class's probability. More classes: the one-vs-rest AUROC
    averaged over the classes that occur in ``labels`` (a class absent from a subset has no
    positives, so it has no AUROC and is left out rather than turning the mean into NaN).
    NaN only when ``labels`` holds a single class, where no AUROC exists."""
    present = np.unique(labels)
    if present.size < 2:
        return float("nan")
    if probs.shape[1] == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(np.mean([roc_auc_score(labels == c, probs[:, c]) for c in present]))


def evaluate_masks(predict: Predictor, split: Split, config: ModelConfig, name: str = "test",
                   masks: list[int] | None = None) -> EvalTable:
    """Score ``predict`` on every mask; a sample counts for a mask only if it recorded those sensors."""
    recorded = split.recorded(config.num_sensors)
    rows = []
    for mask in masks or all_masks(config.num_sensors):
        keep = np.flatnonzero(recorded & mask == mask)
        if keep.size == 0:
            continue
        part = split if keep.size == len(split) else split.subset(keep)
        probs = predict(part.frames, mask)
        acc, f1, auroc = score(part.label, probs, config.num_classes)
        rows.append(MaskScore(mask, mask_names(mask, config.sensor_names), int(keep.size), acc, f1, auroc))
    return EvalTable(name, rows)


def format_table(table: EvalTable) -> str:
    lines = [f"{'mask':>5}  {'sensors':<28} {'n':>6} {'acc':>7} {'macroF1':>8} {'AUROC':>7}"]
    for r in table.rows:
        lines.append(f"{r.mask:>5}  {'+'.join(r.sensors):<28} {r.n:>6} {r.accuracy:7.4f} "
                     f"{r.macro_f1:8.4f} {r.auroc:7.4f}")
    m = table.mean
    lines.append(f"{'mean':>5}  {'(all ' + str(len(table.rows)) + ' masks)':<28} {'':>6} "
                 f"{m['accuracy']:7.4f} {m['macro_f1']:8.4f} {m['auroc']:7.4f}")
    return "\n".join(lines)
