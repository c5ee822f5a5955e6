"""``edgemoe bench accuracy --quick`` runs end to end on a dataset in the on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgemoe.bench.accuracy import SOLO_WEIGHT, BenchSettings, _seeded, run_benchmark
from edgemoe.cli import main
from edgemoe.core.errors import ConfigError
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split


def test_quick_accuracy_bench_writes_table_plot_and_routing(dataset_dir: Path, tmp_path: Path) -> None:
    rc = main(["bench", "accuracy", "--data", str(dataset_dir), "--quick", "--out", str(tmp_path),
               "--methods", "smoe,permask", "--train-limit", "128", "--jobs", "2"])
    assert rc == 0
    table = (tmp_path / "accuracy.md").read_text()
    assert "| smoe |" in table and "| permask |" in table and "rate 0.5, one sensor removed" in table
    assert f"Command: `edgemoe bench accuracy --data {dataset_dir} --quick --out {tmp_path}" in table
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    raw = json.loads((tmp_path / "accuracy.json").read_text())
    assert len(raw["masks"]["smoe"]["0"]) == 15
    assert 0 <= raw["masks"]["smoe"]["0"]["15"]["max_share"] <= 1


def _flat(tree: object, prefix: str = "") -> dict[str, float]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}/{key}").items()}
    return {prefix: float(tree)}  # type: ignore[arg-type]


def test_parallel_jobs_give_the_same_scores_as_one_process(config: ModelConfig, dataset: dict[str, Split]) -> None:
    """Each task seeds its own training, so the process it lands in cannot change a score.

    Both runs give every training one thread (``training.threads = 1``): torch's reductions are
    ordered differently for another thread count, so only the process is varied here. Floats of
    different processes are compared to 1e-6, not for equality: the claim is about seeding, and a
    last-bit difference in a library's reduction is not a seeding bug."""
    one_thread = config.model_copy(update={"training": config.training.model_copy(update={"threads": 1})})
    settings = {"methods": ("smoe",), "seeds": (0,), "rates": (0.3,), "epochs": 2, "train_limit": 128}
    one = run_benchmark(one_thread, dataset, BenchSettings(**settings, jobs=1), log=lambda line: None)
    two = run_benchmark(one_thread, dataset, BenchSettings(**settings, jobs=2), log=lambda line: None)
    a, b = _flat({"scores": one.scores, "masks": one.masks}), _flat({"scores": two.scores, "masks": two.masks})
    assert a.keys() == b.keys()
    assert a == pytest.approx(b, abs=1e-6, nan_ok=True)
    assert list(one.scores["smoe"]) == ["all masks", "rate 0.3", "rate 0.3, one sensor removed"]


def test_selection_cannot_start_after_the_last_epoch(config: ModelConfig) -> None:
    with pytest.raises(ValueError, match="select_from_epoch=5 is after the last epoch"):
        config.training.model_validate({"epochs": 4, "select_from_epoch": 5})


def test_empty_rates_switch_the_rate_settings_off(dataset_dir: Path, tmp_path: Path) -> None:
    rc = main(["bench", "accuracy", "--data", str(dataset_dir), "--quick", "--out", str(tmp_path),
               "--methods", "smoe", "--train-limit", "64", "--jobs", "1", "--rates", ""])
    assert rc == 0
    raw = json.loads((tmp_path / "accuracy.json").read_text())
    assert list(raw["scores"]["smoe"]) == ["all masks"]


def test_results_default_to_runs_never_to_recorded_results(dataset_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["bench", "accuracy", "--data", str(dataset_dir), "--quick", "--methods", "smoe",
               "--train-limit", "64", "--jobs", "1", "--rates", ""])
    assert rc == 0
    assert (tmp_path / "runs" / "bench" / "accuracy.md").is_file()
    assert not (tmp_path / "benchmarks").exists()


def test_data_of_another_schema_without_config_names_the_assumed_schema(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    large = Path(__file__).resolve().parent.parent / "edgemoe" / "configs" / "robot4_large.yaml"
    assert main(["data", "synth", "--config", str(large), "--out", str(tmp_path / "d"), "--scale", "0.005"]) == 0
    rc = main(["bench", "accuracy", "--data", str(tmp_path / "d"), "--quick", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "sensor 'camera' expected shape" in err and "found shape [" in err and "3, 96, 96]" in err
    assert "no --config was given, so the built-in 'robot4' schema was assumed" in err


def test_method_options_switch_their_part_or_rule_on_and_unknown_ones_are_named(config: ModelConfig) -> None:
    settings = BenchSettings(epochs=2)
    cfg = _seeded(config, "smoe+fusion+uniform+probes", seed=1, s=settings, threads=1)
    assert (cfg.model.fusion, cfg.model.fusion_messages) == ("attention", True)
    assert (cfg.training.mask_sampling, cfg.training.sensor_probe_weight, cfg.training.seed) == ("uniform", 1.0, 1)
    assert _seeded(config, "smoe+fusion+nomessages", 0, settings, 1).model.fusion_messages is False
    assert _seeded(config, "smoe+solo", 0, settings, 1).training.solo_pass_weight == SOLO_WEIGHT > 0
    assert _seeded(config, "smoe+slots", 0, settings, 1).model.readout == "slots"
    assert _seeded(config, "confsmoe+pooled", 0, settings, 1).model.readout == "mean"
    with pytest.raises(ConfigError, match="unknown option 'fusoin'"):
        _seeded(config, "smoe+fusoin", 0, settings, 1)
