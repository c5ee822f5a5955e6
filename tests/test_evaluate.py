"""AUROC is defined for binary data sets and for subsets that miss a class."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from edgemoe.train.evaluate import auroc, score


def test_binary_auroc_is_the_positive_class_auroc() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    p1 = np.clip(0.3 * labels + rng.uniform(0, 0.7, 200), 0, 1)
    probs = np.stack([1 - p1, p1], 1)
    acc, f1, value = score(labels, probs, 2)
    assert np.isfinite(value) and value == pytest.approx(roc_auc_score(labels, p1))
    assert 0.5 < value <= 1 and 0 < acc <= 1 and 0 < f1 <= 1


def test_multiclass_auroc_skips_classes_absent_from_the_subset() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)  # class 3 of 4 never occurs
    logits = rng.normal(0, 1, (300, 4)) + 2 * np.eye(4)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = np.mean([roc_auc_score(labels == c, probs[:, c]) for c in range(3)])
    assert auroc(labels, probs) == pytest.approx(expected)


def test_auroc_of_a_single_class_is_nan() -> None:
    assert np.isnan(auroc(np.zeros(10, int), np.full((10, 2), 0.5)))
