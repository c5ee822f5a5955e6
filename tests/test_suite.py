"""The accuracy suite: seeded regimes in the product's shapes, an exact Bayes ceiling, headroom
that is measured and enforced, and tables that say which regimes rank the methods."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from edgemoe.bench import suite as suite_module
from edgemoe.bench.accuracy import DEDICATED, BenchResult, BenchSettings
from edgemoe.bench.report import suite_markdown
from edgemoe.bench.suite import (MIN_HEADROOM, RegimeResult, SaturatedBenchmark, SuiteResult, headroom,
                                 headroom_closed, run_quick)
from edgemoe.cli import main
from edgemoe.core.mask import all_masks
from edgemoe.core.schema import ModelConfig, load_config
from edgemoe.data.regimes import REGIMES, get_regime

LARGE = Path(__file__).resolve().parent.parent / "edgemoe" / "configs" / "robot4_large.yaml"


@pytest.mark.parametrize("name", sorted(REGIMES))
def test_regimes_render_the_schema_shapes_and_are_seeded(config: ModelConfig, name: str) -> None:
    regime = get_regime(name)
    a, b = regime.generate(config, seed=1, scale=0.02), regime.generate(config, seed=1, scale=0.02)
    for split in ("train", "val", "test"):
        for spec in config.sensors:
            frame = a[split].frames[spec.name]
            assert frame.shape[1:] == spec.shape and frame.dtype == np.float32
            np.testing.assert_array_equal(frame, b[split].frames[spec.name])
        assert set(np.unique(a[split].label)) == set(range(config.num_classes))


def test_regimes_render_the_realistic_config_too() -> None:
    cfg = load_config(LARGE)
    data = get_regime("nuisance").generate(cfg, seed=0, scale=0.005)
    assert data["test"].frames["camera"].shape[1:] == (3, 96, 96)
    assert data["test"].frames["odom"].shape[1:] == (16,)


def test_bayes_ceiling_is_what_a_linear_discriminant_reaches_on_the_rendered_frames(config: ModelConfig) -> None:
    """The ceiling is computed from the model's parameters, never from frames; an LDA fitted on
    many rendered frames (in physical units) must come close to it and never clearly beat it."""
    regime = get_regime("units")
    ceiling = regime.ceiling(config)
    train = regime._split(config, 24_000, seed=5)
    test = regime._split(config, 12_000, seed=6)
    for mask in (1, 4, 3):  # camera; imu; camera+scan
        names = [n for i, n in enumerate(config.sensor_names) if mask >> i & 1]
        flat = lambda s: np.concatenate([s.frames[n].reshape(len(s), -1) for n in names], 1)  # noqa: E731
        lda = LinearDiscriminantAnalysis().fit(flat(train), train.label)
        fitted = float((lda.predict(flat(test)) == test.label).mean())
        assert ceiling[mask] - 0.04 < fitted < ceiling[mask] + 0.015, (mask, fitted, ceiling[mask])


def test_ceilings_spread_over_sensor_counts_instead_of_capping(config: ModelConfig) -> None:
    for name in ("nuisance", "units", "fleet"):
        ceiling = get_regime(name).ceiling(config)
        by_count = {k: np.mean([a for c, a in ceiling.items() if bin(c).count("1") == k]) for k in (1, 2, 3, 4)}
        assert by_count[1] < by_count[2] < by_count[3] <= by_count[4] + 1e-9, (name, by_count)


def test_fleet_records_the_camera_rarely_in_training_and_always_in_test(config: ModelConfig) -> None:
    data = get_regime("fleet").generate(config, seed=0, scale=0.5)
    camera = data["train"].recorded(config.num_sensors) & 1
    assert 0.10 < camera.mean() < 0.20
    assert (data["train"].frames["camera"][camera == 0] == 0).all()
    assert data["test"].mask is None


def test_robot4_reports_its_capped_masks(config: ModelConfig) -> None:
    assert get_regime("robot4").capped(config) == [1, 2, 4, 8, 12]  # each single sensor, imu+odom
    assert get_regime("nuisance").capped(config) == []


def _fake_bench(config: ModelConfig, accuracy: dict[str, float], share: float = 0.3) -> BenchResult:
    result = BenchResult(config, BenchSettings(methods=tuple(accuracy), seeds=(0,), rates=()))
    for method, acc in accuracy.items():
        rows = {c: {"accuracy": acc, "macro_f1": acc, "auroc": 0.9, "expected": acc + 0.01}
                for c in all_masks(config.num_sensors)}
        if method != DEDICATED:
            for row in rows.values():
                row |= {"max_share": share, "entropy": 1.2, "unused": 0.0}
        result.masks[method] = {0: rows}
        result.add(method, "all masks", 0, {"accuracy": acc, "macro_f1": acc, "auroc": 0.9, "worst": acc,
                                            "calibration_error": 0.01})
    return result


def test_headroom_and_headroom_closed(config: ModelConfig) -> None:
    result = _fake_bench(config, {"smoe": 0.70, "mars": 0.76, DEDICATED: 0.80})
    assert headroom(result) == pytest.approx(0.10)
    assert headroom_closed(result, "mars") == pytest.approx(0.6)
    assert headroom_closed(result, "smoe") == pytest.approx(0.0)


def test_report_refuses_to_rank_on_a_saturated_regime_and_flags_expert_load(config: ModelConfig) -> None:
    tight = RegimeResult(get_regime("units"), _fake_bench(config, {"smoe": 0.80, DEDICATED: 0.81}, share=0.6), None, [])
    ceiling = {c: 0.90 for c in all_masks(config.num_sensors)}
    wide = RegimeResult(get_regime("nuisance"), _fake_bench(config, {"smoe": 0.70, DEDICATED: 0.80}), ceiling, [])
    text = suite_markdown(SuiteResult("failures", [tight, wide]), "t")
    assert "below Bayes ceiling" in text and "| smoe | 70.0 ± 0.0 |" in text and "| 20.0 |" in text
    assert "Headroom 1.0 pts < 5: not used to rank methods." in text
    assert text.count("not used to rank") == 1
    assert "0.60 ⚠" in text  # 2/N = 0.5 for 4 experts


def test_report_judges_the_best_method_against_the_bars_on_ranking_regimes_only(config: ModelConfig) -> None:
    tight = RegimeResult(get_regime("units"), _fake_bench(config, {"smoe": 0.80, "mars": 0.95, DEDICATED: 0.81}), None, [])
    met = RegimeResult(get_regime("nuisance"), _fake_bench(config, {"smoe": 0.70, "mars": 0.76, "confsmoe": 0.72,
                                                                    DEDICATED: 0.80}), None, [])
    short = RegimeResult(get_regime("robot4"), _fake_bench(config, {"smoe": 0.70, "mars": 0.75, DEDICATED: 0.80}), None, [])
    text = suite_markdown(SuiteResult("failures", [tight, met, short]), "t")
    assert "| nuisance (10.0) | mars | +6.0 | 60% | 76.0 vs 70.0 | 76.0 vs 70.0 | yes |" in text
    assert "| robot4 (10.0) | mars | +5.0 | 50% | 75.0 vs 70.0 | 75.0 vs 70.0 | no |" in text
    assert "| units (" not in text  # headroom 1 pt: not judged
    # one configuration for both ranking regimes: only mars ran on both (confsmoe not on robot4)
    assert "One method for every regime (the best worst-case headroom closed): `mars` — nuisance +6.0 / 60%, " \
           "robot4 +5.0 / 50%: not met on all of them." in text


def test_quick_preset_fails_when_the_regime_saturates(config: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = RegimeResult(get_regime("nuisance"), _fake_bench(config, {"smoe": 0.80, DEDICATED: 0.82}), None, [])
    monkeypatch.setattr(suite_module, "run_suite", lambda *a, **k: SuiteResult("nuisance", [flat]))
    with pytest.raises(SaturatedBenchmark, match="headroom 2.0 pts .* below 5 pts"):
        run_quick(config, BenchSettings())


def test_quick_suite_keeps_its_headroom(tmp_path: Path) -> None:
    """The CI guard: the quick preset trains zero-fill SMoE and the dedicated models on one regime
    and fails (exit 2) if the benchmark could no longer tell methods apart."""
    rc = main(["bench", "accuracy", "--suite", "failures", "--quick", "--out", str(tmp_path), "--jobs", "2"])
    assert rc == 0
    raw = json.loads((tmp_path / "suite_nuisance.json").read_text())
    assert raw["regimes"]["nuisance"]["headroom"] >= MIN_HEADROOM
    assert (tmp_path / "suite_nuisance_nuisance.png").stat().st_size > 5000


def test_data_synth_writes_a_regime_in_the_on_disk_format(tmp_path: Path, config: ModelConfig) -> None:
    from edgemoe.data.dataset import load_dataset

    assert main(["data", "synth", "--regime", "fleet", "--out", str(tmp_path), "--scale", "0.05"]) == 0
    data = load_dataset(tmp_path, config)
    assert data["train"].mask is not None and data["test"].mask is None
    expected = get_regime("fleet").generate(config, seed=0, scale=0.05)
    np.testing.assert_array_equal(data["val"].frames["scan"], expected["val"].frames["scan"])


def test_a_suite_is_named_or_listed_by_its_regimes() -> None:
    assert suite_module.suite_regimes("failures") == ("nuisance", "units", "fleet", "robot4")
    assert suite_module.suite_regimes("nuisance, robot4") == ("nuisance", "robot4")
    assert suite_module.suite_name("nuisance,robot4") == "nuisance+robot4"
    assert suite_module.suite_regimes("nuisance+robot4") == ("nuisance", "robot4")
    assert suite_module.suite_name("failures") == "failures"
    with pytest.raises(Exception, match="unknown suite or regime 'vibration'.*regimes: nuisance"):
        suite_module.suite_regimes("nuisance,vibration")
