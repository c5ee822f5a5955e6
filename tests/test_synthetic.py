"""``edgemoe data synth`` renders every config the product ships, channels included, and the
loader casts float frames to the schema's float32 with a warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgemoe.cli import main
from edgemoe.core.schema import load_config
from edgemoe.data.dataset import Split, load_dataset, save_split
from edgemoe.data.synthetic import generate_split
from edgemoe.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parent.parent / "edgemoe" / "configs"


def test_realistic_config_is_shipped_at_a_real_robots_size() -> None:
    cfg = load_config(CONFIGS / "robot4_large.yaml")
    shapes = {s.name: s.shape for s in cfg.sensors}
    assert shapes["camera"] == (3, 96, 96) and shapes["scan"] == (1, 720) and shapes["imu"] == (6, 200)
    assert cfg.model.dim >= 128 and cfg.model.num_experts == 8


def test_synth_writes_every_camera_channel_and_trains_on_it(tmp_path: Path) -> None:
    path = CONFIGS / "robot4_large.yaml"
    assert main(["data", "synth", "--config", str(path), "--out", str(tmp_path), "--scale", "0.003"]) == 0
    cfg = load_config(path)
    data = load_dataset(tmp_path, cfg)
    assert data["train"].frames["camera"].shape[1:] == (3, 96, 96)
    assert main(["data", "check", str(tmp_path), "--config", str(path)]) == 0
    one_step = cfg.model_copy(update={"training": cfg.training.model_copy(update={"epochs": 1, "batch_size": 32, "threads": 1})})
    result = Trainer(one_step, log=lambda line: None, progress=False).fit(data["train"], data["val"])
    assert np.isfinite(result.history[-1]["loss"])


def test_channels_are_distinct_renderings_of_one_scene() -> None:
    cfg = load_config(CONFIGS / "robot4_large.yaml")
    camera = generate_split(cfg, 16, seed=3).frames["camera"]
    assert camera.shape == (16, 3, 96, 96) and camera.dtype == np.float32
    assert not np.allclose(camera[:, 0], camera[:, 1])  # own noise per channel
    signal = camera.mean(axis=(0, 2, 3))
    assert signal[0] > signal[2]  # the blob's colour: channel gains 1.0 .. 0.6


def test_float64_frames_are_cast_with_a_warning(tmp_path: Path) -> None:
    cfg = load_config(None)
    split = generate_split(cfg, 16, seed=0)
    wide = Split({k: v.astype(np.float64) for k, v in split.frames.items()}, split.label, None)
    for name in ("train", "val", "test"):
        save_split(wide, tmp_path / f"{name}.npz")
    with pytest.warns(UserWarning, match="sensor 'camera' is float64, cast to float32"):
        data = load_dataset(tmp_path, cfg)
    assert data["train"].frames["camera"].dtype == np.float32
    np.testing.assert_array_equal(data["train"].frames["scan"], split.frames["scan"])
