"""The one schema: sensors, mask bit order, model size and training settings.

Declared once in a YAML model config, validated here, stored verbatim (as JSON) inside the
checkpoint and the bundle manifest. Everything downstream reads it from there; nothing
re-declares a sensor name, a frame shape or the bit order.

The mask bit order is the order of the ``sensors`` list: bit ``i`` of a mask is ``sensors[i]``.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edgemoe.core.config import StrictModel, load_yaml_as, validate_as
from edgemoe.core.errors import ConfigError

MAX_SENSORS = 16  # masks are stored as small ints; 2^16 - 1 plans is the practical ceiling
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "robot4.yaml"


class SensorKind(str, Enum):
    """What a frame looks like, which picks the encoder architecture."""

    image = "image"  # [C, H, W] -> 2-D conv encoder
    scan = "scan"  # [C, L] range scan -> 1-D conv encoder
    imu = "imu"  # [channels, time] window -> 1-D conv over time
    vector = "vector"  # [F] low-rate feature vector -> MLP


_RANK = {SensorKind.image: 3, SensorKind.scan: 2, SensorKind.imu: 2, SensorKind.vector: 1}


class SensorSpec(StrictModel):
    """One sensor: its name, frame shape (without batch), kind and nominal rate."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: SensorKind
    shape: tuple[int, ...]
    rate_hz: float = Field(gt=0)
    dtype: Literal["float32"] = "float32"

    @model_validator(mode="after")
    def _shape_matches_kind(self) -> SensorSpec:
        if len(self.shape) != _RANK[self.kind] or any(d <= 0 for d in self.shape):
            raise ValueError(
                f"sensor '{self.name}': kind '{self.kind.value}' needs a frame of rank "
                f"{_RANK[self.kind]} with positive sizes, got shape {list(self.shape)}"
            )
        return self

    @property
    def deadline_s(self) -> float:
        """A frame older than two nominal periods means the sensor is late."""
        return 2.0 / self.rate_hz


class ModelSpec(StrictModel):
    """Model size and method. ``method`` and ``gate`` name registry entries."""

    method: str = "smoe"
    dim: int = Field(32, ge=4)
    tokens_per_sensor: int = Field(4, ge=1)
    num_experts: int = Field(4, ge=1)
    top_k: int = Field(2, ge=1)
    expert_hidden: int = Field(64, ge=1)
    gate: Literal["softmax", "laplace", "gaussian"] = "softmax"
    noisy_gating: bool = True
    # Cross-sensor fusion before the MoE: masked self-attention blocks over the present sensors'
    # tokens (edgemoe/model/fusion.py), or none.
    fusion: Literal["none", "attention"] = "none"
    fusion_heads: int = Field(4, ge=1)
    fusion_layers: int = Field(1, ge=1)
    # With fusion: first a linear message per (receiver, sender) pair of sensors, averaged over the
    # present senders, which can cancel a disturbance every sensor feels through its own loading.
    fusion_messages: bool = True
    # What the head reads: ``mean``, every token that counts averaged into one; ``slots``, one slot
    # per sensor (the mean of its tokens), so the head knows which sensor said what, and a
    # Conf-SMoE model imputes a missing sensor's slot from the present sensors' expert outputs.
    # Unset: the method's own (``slots`` for confsmoe, as its public design; ``mean`` otherwise).
    readout: Literal["mean", "slots"] | None = None

    @model_validator(mode="after")
    def _k_fits(self) -> ModelSpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"model.top_k={self.top_k} exceeds model.num_experts={self.num_experts}")
        return self


class TrainSpec(StrictModel):
    """Training settings; the sensor dropout is what makes the model robust to missing sensors."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    sensor_dropout: float = Field(0.5, ge=0, le=1)
    # How training samples are shown under sensor combinations (edgemoe/train/masks.py).
    mask_sampling: Literal["dropout", "uniform", "availability", "random_rate"] = "dropout"
    load_balance_weight: float = Field(0.01, ge=0)
    # > 0: a linear probe per sensor on its own encoder tokens adds this weight times the sum of
    # the probes' cross-entropies (edgemoe/model/objectives.py SensorProbes), so a sensor the
    # others duplicate still learns what it alone can tell. Training only; off by default.
    sensor_probe_weight: float = Field(0.0, ge=0)
    # > 0: every present sensor also runs alone through the model's own path (fill, fusion,
    # router, experts, head), adding this weight times the sum over sensors of those passes'
    # cross-entropies (edgemoe/model/objectives.py SoloPasses): each encoder learns to carry the
    # masks where it is the last sensor left. Training only; off by default.
    solo_pass_weight: float = Field(0.0, ge=0)
    seed: int = 0
    threads: int = Field(2, ge=1)
    # Epochs before this one skip validation and cannot be selected. Validating every mask costs
    # about as much as an epoch of training, and under the one-cycle schedule the best epoch
    # comes late, so a budgeted run (the accuracy benchmark) validates only the second half.
    select_from_epoch: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _selection_within_schedule(self) -> TrainSpec:
        if self.select_from_epoch > self.epochs:
            raise ValueError(f"training.select_from_epoch={self.select_from_epoch} is after the last "
                             f"epoch (training.epochs={self.epochs}): no epoch could be selected")
        return self


class ModelConfig(StrictModel):
    """The whole schema. ``sensors`` order is the mask bit order."""

    name: str
    num_classes: int = Field(ge=2)
    sensors: tuple[SensorSpec, ...]
    model: ModelSpec = ModelSpec()
    training: TrainSpec = TrainSpec()

    @field_validator("sensors")
    @classmethod
    def _unique_sensors(cls, sensors: tuple[SensorSpec, ...]) -> tuple[SensorSpec, ...]:
        if not 1 <= len(sensors) <= MAX_SENSORS:
            raise ValueError(f"need 1..{MAX_SENSORS} sensors, got {len(sensors)}")
        names = [s.name for s in sensors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate sensor names {dupes}")
        return sensors

    @property
    def sensor_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sensors)

    @property
    def num_sensors(self) -> int:
        return len(self.sensors)

    def sensor(self, name: str) -> SensorSpec:
        for spec in self.sensors:
            if spec.name == name:
                return spec
        raise ConfigError(f"unknown sensor '{name}' (schema has {list(self.sensor_names)})")

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> ModelConfig:
        return cls.from_dict(json.loads(text), source)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> ModelConfig:
        return validate_as(cls, data, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelConfig:
        return load_yaml_as(cls, Path(path), "model config")


def load_config(path: str | Path | None) -> ModelConfig:
    """Load a model config; ``None`` means the built-in 4-sensor robot."""
    return ModelConfig.from_yaml(path if path is not None else DEFAULT_CONFIG)

