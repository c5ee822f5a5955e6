"""The model config is the one schema: validated up front, errors name the key."""

from pathlib import Path

import pytest

from edgemoe.core.errors import ConfigError
from edgemoe.core.mask import (
    all_masks, bits_to_masks, mask_from_names, mask_label, mask_names, masks_to_bits, parse_mask,
)
from edgemoe.core.schema import ModelConfig, SensorKind, load_config


def test_default_config_is_the_four_sensor_robot(config: ModelConfig) -> None:
    assert config.sensor_names == ("camera", "scan", "imu", "odom")
    assert [s.kind for s in config.sensors] == [SensorKind.image, SensorKind.scan, SensorKind.imu, SensorKind.vector]
    assert config.sensor("imu").deadline_s == pytest.approx(2 / 50)


def test_schema_round_trips_through_json(config: ModelConfig) -> None:
    assert ModelConfig.from_json(config.to_json()) == config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


BASE = """
name: t
num_classes: 3
sensors:
  - {name: cam, kind: image, shape: [1, 8, 8], rate_hz: 10}
  - {name: vec, kind: vector, shape: [4], rate_hz: 5}
"""


def test_shape_of_wrong_rank_names_the_sensor_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("shape: [4]", "shape: [4, 2]"))
    with pytest.raises(ConfigError, match=r"sensors\.1.*vec.*rank 1"):
        ModelConfig.from_yaml(path)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + "model: {dim: 16, experts: 3}\n")
    with pytest.raises(ConfigError, match=r"model\.experts"):
        ModelConfig.from_yaml(path)


def test_duplicate_sensor_names_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("name: vec", "name: cam"))
    with pytest.raises(ConfigError, match="duplicate sensor names"):
        ModelConfig.from_yaml(path)


def test_top_k_larger_than_experts_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + "model: {num_experts: 2, top_k: 3}\n")
    with pytest.raises(ConfigError, match="top_k=3 exceeds"):
        ModelConfig.from_yaml(path)


def test_missing_file_and_bad_yaml_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ModelConfig.from_yaml(_write(tmp_path, "name: [unclosed"))


def test_mask_bit_order_is_the_sensor_order(config: ModelConfig) -> None:
    names = config.sensor_names
    assert mask_from_names(["camera", "imu"], names) == 0b0101
    assert mask_names(0b1010, names) == ["scan", "odom"]
    assert mask_label(0b0101, names) == "camera+imu"
    assert parse_mask("camera+imu", names) == parse_mask("0b0101", names) == parse_mask("5", names) == 5
    assert all_masks(4) == list(range(1, 16))
    masks = bits_to_masks(masks_to_bits([1, 6, 15], 4))
    assert masks.tolist() == [1, 6, 15]


def test_unknown_sensor_in_a_mask_is_named(config: ModelConfig) -> None:
    with pytest.raises(ConfigError, match="unknown sensor 'lidar'"):
        parse_mask("camera+lidar", config.sensor_names)
    with pytest.raises(ConfigError, match="out of range"):
        parse_mask("16", config.sensor_names)
