"""``edgemoe bench accuracy --quick`` runs end to end on a dataset in the on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemoe.bench.accuracy import BenchSettings, run_benchmark
from edgemoe.cli import main
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split


def test_quick_accuracy_bench_writes_table_plot_and_routing(dataset_dir: Path, tmp_path: Path) -> None:
    rc = main(["bench", "accuracy", "--data", str(dataset_dir), "--quick", "--out", str(tmp_path),
               "--methods", "smoe,permask", "--train-limit", "128", "--jobs", "2"])
    assert rc == 0
    table = (tmp_path / "accuracy.md").read_text()
    assert "| smoe |" in table and "| permask |" in table and "rate 0.5, one sensor removed" in table
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    raw = json.loads((tmp_path / "accuracy.json").read_text())
    assert len(raw["masks"]["smoe"]["0"]) == 15
    assert 0 <= raw["masks"]["smoe"]["0"]["15"]["max_share"] <= 1


def test_parallel_jobs_give_the_same_scores_as_one_process(config: ModelConfig, dataset: dict[str, Split]) -> None:
    """Each task seeds its own training, so the process it lands in cannot change a score."""
    settings = {"methods": ("smoe",), "seeds": (0,), "rates": (0.3,), "epochs": 2, "train_limit": 128}
    one = run_benchmark(config, dataset, BenchSettings(**settings, jobs=1), log=lambda line: None)
    two = run_benchmark(config, dataset, BenchSettings(**settings, jobs=2), log=lambda line: None)
    assert one.scores == two.scores and one.masks == two.masks
    assert list(one.scores["smoe"]) == ["all masks", "rate 0.3", "rate 0.3, one sensor removed"]


def test_selection_cannot_start_after_the_last_epoch(config: ModelConfig) -> None:
    with pytest.raises(ValueError, match="select_from_epoch=5 is after the last epoch"):
        config.training.model_validate({"epochs": 4, "select_from_epoch": 5})
