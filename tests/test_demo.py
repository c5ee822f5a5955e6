"""The demo's scripted stream and replay, on the fixtures' engines (the full demo trains; CI skips it)."""

from pathlib import Path

import numpy as np
import pytest

from edgemoe.data.dataset import Split
from edgemoe.recipes.demo import compact_engines, default_script, replay, scripted_frames
from edgemoe.runtime.runtime import NON_FINITE, Runtime


def test_script_applies_outages_as_absent_or_nan(dataset: dict[str, Split]) -> None:
    frames = list(scripted_frames(dataset["test"], default_script(100), 100, np.random.default_rng(0)))
    assert len(frames) == 100
    _, at_12, _ = frames[12]
    assert at_12["camera"] is None and at_12["imu"] is not None
    _, at_27, _ = frames[27]
    assert at_27["camera"] is None and np.isnan(at_27["imu"]).all()
    _, at_96, _ = frames[96]
    assert all(v is None for v in at_96.values())


def test_replay_follows_the_script(engines_dir: Path, dataset: dict[str, Split],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    runtime = Runtime.load(engines_dir)
    seen = [runtime.infer(f) for _, f, _ in scripted_frames(dataset["test"], default_script(100), 100,
                                                             np.random.default_rng(0))]
    assert seen[0].mask == 0b1111 and seen[12].mask == 0b1110 and seen[27].mask == 0b1010
    assert seen[27].missing["imu"] == NON_FINITE
    assert seen[80].mask == 0b1000 and seen[96].label is None
    replay(runtime, dataset["test"], 100, 10)
    out = capsys.readouterr().out
    assert "replay summary" in out and "no prediction" in out


def test_compact_engine_list() -> None:
    assert compact_engines(("encoder[camera]", "encoder[imu]", "gate", "expert[0]", "expert[3]", "head")) == \
        "enc camera,imu | gate | exp 0,3 | head"
