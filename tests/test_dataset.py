"""The synthetic generator is deterministic; the loader rejects bad files, naming what and where."""

from pathlib import Path

import numpy as np
import pytest

from edgemoe.core.errors import DatasetError
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split, load_dataset, load_split, save_split
from edgemoe.data.synthetic import generate_split


def test_same_seed_gives_the_same_data(config: ModelConfig) -> None:
    a, b = generate_split(config, 64, seed=7), generate_split(config, 64, seed=7)
    c = generate_split(config, 64, seed=8)
    for name in config.sensor_names:
        np.testing.assert_array_equal(a.frames[name], b.frames[name])
        assert a.frames[name].shape == (64, *config.sensor(name).shape)
        assert a.frames[name].dtype == np.float32
    assert not np.array_equal(a.frames["camera"], c.frames["camera"])
    assert np.bincount(a.label, minlength=8).tolist() == [8] * 8


def test_written_dataset_loads_back(dataset_dir: Path, config: ModelConfig) -> None:
    splits = load_dataset(dataset_dir, config)
    assert set(splits) == {"train", "val", "test"}
    assert all(len(s) > 0 for s in splits.values())


def _write(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "train.npz"
    np.savez(path, **arrays)
    return path


def _good(config: ModelConfig, n: int = 16) -> dict[str, np.ndarray]:
    split = generate_split(config, n, seed=1)
    return {**split.frames, "label": split.label}


def test_wrong_shape_names_sensor_expected_and_found(tmp_path: Path, config: ModelConfig) -> None:
    arrays = _good(config)
    arrays["scan"] = arrays["scan"][:, :, :32]
    with pytest.raises(DatasetError, match=r"sensor 'scan' expected shape \[16, 1, 64\] dtype float32, found shape \[16, 1, 32\]"):
        load_split(_write(tmp_path, **arrays), config)


def test_wrong_dtype_is_named(tmp_path: Path, config: ModelConfig) -> None:
    arrays = _good(config)
    arrays["imu"] = arrays["imu"].astype(np.int32)
    with pytest.raises(DatasetError, match=r"sensor 'imu'.*found .*dtype int32"):
        load_split(_write(tmp_path, **arrays), config)


def test_float64_frames_are_cast_with_a_warning(tmp_path: Path, config: ModelConfig) -> None:
    arrays = _good(config)
    arrays["imu"] = arrays["imu"].astype(np.float64)
    with pytest.warns(UserWarning, match=r"sensor 'imu' is float64, cast to float32"):
        split = load_split(_write(tmp_path, **arrays), config)
    assert split.frames["imu"].dtype == np.float32
    np.testing.assert_array_equal(split.frames["imu"], arrays["imu"].astype(np.float32))


def test_nan_in_a_recorded_frame_is_named(tmp_path: Path, config: ModelConfig) -> None:
    arrays = _good(config)
    arrays["odom"][5, 2] = np.inf
    with pytest.raises(DatasetError, match=r"sensor 'odom' has NaN/Inf at sample 5"):
        load_split(_write(tmp_path, **arrays), config)


def test_nan_in_an_unrecorded_cell_is_allowed_and_zeroed(tmp_path: Path, config: ModelConfig) -> None:
    arrays = _good(config)
    arrays["odom"][5] = np.nan
    mask = np.ones((16, 4), np.uint8)
    mask[5, 3] = 0
    split = load_split(_write(tmp_path, **arrays, mask=mask), config)
    assert np.all(split.frames["odom"][5] == 0)
    assert split.mask is not None and split.mask[5] == 0b0111


def test_labels_out_of_range_are_named(tmp_path: Path, config: ModelConfig) -> None:
    arrays = _good(config)
    arrays["label"][3] = 8
    with pytest.raises(DatasetError, match=r"label 8 at sample 3 out of range 0\.\.7"):
        load_split(_write(tmp_path, **arrays), config)


def test_missing_sensor_array_and_unknown_arrays_are_named(tmp_path: Path, config: ModelConfig) -> None:
    arrays = _good(config)
    del arrays["camera"]
    with pytest.raises(DatasetError, match=r"missing array for sensor 'camera'"):
        load_split(_write(tmp_path, **arrays), config)
    arrays = _good(config)
    arrays["lidar"] = np.zeros(16, np.float32)
    with pytest.raises(DatasetError, match=r"unknown arrays \['lidar'\]"):
        load_split(_write(tmp_path, **arrays), config)


def test_sample_with_no_recorded_sensor_is_refused(tmp_path: Path, config: ModelConfig) -> None:
    mask = np.ones((16, 4), np.uint8)
    mask[2] = 0
    with pytest.raises(DatasetError, match="sample 2 has no recorded sensor"):
        load_split(_write(tmp_path, **_good(config), mask=mask), config)


def test_not_an_archive_is_refused(tmp_path: Path, config: ModelConfig) -> None:
    path = tmp_path / "train.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_split(path, config)
    with pytest.raises(DatasetError, match="file not found"):
        load_split(tmp_path / "val.npz", config)


def test_save_split_round_trips_the_mask(tmp_path: Path, config: ModelConfig) -> None:
    split = generate_split(config, 16, seed=2)
    masked = Split(split.frames, split.label, np.array([15, 1, 6, 9] * 4))
    save_split(masked, tmp_path / "test.npz", config.sensor_names)
    loaded = load_split(tmp_path / "test.npz", config)
    assert loaded.mask is not None and loaded.mask.tolist() == [15, 1, 6, 9] * 4
