"""``edgemoe bench accuracy --quick`` runs end to end on a dataset in the on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

from edgemoe.cli import main


def test_quick_accuracy_bench_writes_table_plot_and_routing(dataset_dir: Path, tmp_path: Path) -> None:
    rc = main(["bench", "accuracy", "--data", str(dataset_dir), "--quick", "--out", str(tmp_path),
               "--methods", "smoe,permask", "--train-limit", "128"])
    assert rc == 0
    table = (tmp_path / "accuracy.md").read_text()
    assert "| smoe |" in table and "| permask |" in table and "rate 0.5, one sensor removed" in table
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    raw = json.loads((tmp_path / "accuracy.json").read_text())
    assert len(raw["masks"]["smoe"]["0"]) == 15
    assert 0 <= raw["masks"]["smoe"]["0"]["15"]["max_share"] <= 1
