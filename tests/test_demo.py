"""The demo's scripted stream, replayed through the daemon's own replay source, tracker and loop,
on the fixtures' engines (the full demo trains; CI skips it)."""

from pathlib import Path

import pytest

from edgemoe.recipes.demo import compact_engines, default_script, replay, replayed
from edgemoe.runtime.runtime import Runtime


def test_script_is_the_daemons_dropouts_scaled_to_the_stream() -> None:
    script = default_script(100)
    assert {(d.sensor, d.mode) for d in script if d.start_s <= 27 * 0.5 < d.end_s} == {
        ("camera", "silent"), ("imu", "nan")}
    assert len([d for d in script if d.start_s <= 96 * 0.5 < d.end_s]) == 4


def test_replay_follows_the_script(engines_dir: Path, dataset_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = Runtime.load(engines_dir)
    seen = {t: record for t, record, _ in replayed(runtime, dataset_dir, 100)}
    assert seen[0]["mask"] == 0b1111 and seen[12]["mask"] == 0b1110  # camera silent
    assert seen[27]["mask"] == 0b1010  # camera silent, imu sends NaN (dropped by the tracker)
    assert seen[27]["missing"] == {"camera": "absent", "imu": "absent"}
    assert seen[80]["mask"] == 0b1000
    assert seen[96]["label"] is None and seen[96]["reason"] == "no sensor available"
    replay(runtime, dataset_dir, 100, 10)
    out = capsys.readouterr().out
    assert "replay summary" in out and "no prediction" in out


def test_compact_engine_list() -> None:
    assert compact_engines(("encoder[camera]", "encoder[imu]", "gate", "expert[0]", "expert[3]", "head")) == \
        "enc camera,imu | gate | exp 0,3 | head"
