"""Calibration recipes: ``calibration/<name>.yaml`` states the deployment's missing-sensor
statistics, how many samples each stage gets, and the accuracy budgets of the precision choice.

Declarative and validated up front (a wrong key fails before any model is run), like the target
profiles under ``engines/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field

from edgemoe.core.config import StrictModel, load_yaml_as
from edgemoe.core.errors import ConfigError
from edgemoe.packaged import CALIBRATION_RECIPES

DEFAULT_RECIPE = "default"


class Budgets(StrictModel):
    """Accuracy points (percent) a precision may cost versus fp32."""

    int8_stage_mean: float = Field(0.2, ge=0)
    int8_stage_worst: float = Field(0.75, ge=0)
    int8_mean: float = Field(0.5, ge=0)
    int8_worst: float = Field(1.5, ge=0)
    fp16_worst: float = Field(0.1, ge=0)


class CalibrationRecipe(StrictModel):
    name: str = "default"
    method: Literal["routing-aware", "naive"] = "routing-aware"
    split: str = "train"
    validation_split: str = "val"
    seed: int = 0
    missing: dict[str, float] = Field(default_factory=dict)
    samples_per_stage: int = Field(512, ge=1)
    min_samples: int = Field(64, ge=1)
    min_tokens_per_expert: int = Field(256, ge=1)
    draw_frames: int = Field(512, ge=1)
    max_frames: int = Field(16384, ge=1)
    batch: int = Field(64, ge=1)
    activation_calibration: Literal["minmax", "percentile", "entropy"] = "minmax"
    # int8-dynamic quantizes a matrix product only when its fp32 weight is at least this large:
    # smaller ones stay in the cache between frames, and quantizing their activations costs more
    # than their weight reads (calibrate/dynamic.py)
    dynamic_min_weight_kib: int = Field(1024, ge=0)
    budgets: Budgets = Budgets()

    def missing_rates(self, sensors: Sequence[str]) -> list[float]:
        """P(missing) per sensor in mask bit order; a sensor not named is never missing."""
        unknown = sorted(set(self.missing) - set(sensors))
        if unknown:
            raise ConfigError(f"recipe '{self.name}' key 'missing': unknown sensor(s) {unknown} "
                              f"(the bundle's schema has {list(sensors)})")
        bad = {k: v for k, v in self.missing.items() if not 0 <= v < 1}
        if bad:
            raise ConfigError(f"recipe '{self.name}' key 'missing': rates {bad} must lie in [0, 1)")
        return [float(self.missing.get(s, 0.0)) for s in sensors]

    def with_overrides(self, values: Mapping[str, object]) -> CalibrationRecipe:
        return self.model_validate({**self.model_dump(), **{k: v for k, v in values.items() if v is not None}})


def known_recipes() -> list[str]:
    """Names ``load_recipe`` accepts: the shipped recipes and any under ``./calibration/``."""
    return CALIBRATION_RECIPES.names()


def load_recipe(name_or_path: str | Path | None) -> CalibrationRecipe:
    """``default`` -> ``calibration/default.yaml`` (in the working directory, else shipped with the
    package); a path with a suffix is read as is; None means ``default``.

    A missing default is an error, never the model defaults: those have no missing sensors, so
    calibrating with them would silently drop routing-aware calibration.
    """
    name = str(name_or_path) if name_or_path is not None else DEFAULT_RECIPE
    if Path(name).suffix:
        return load_yaml_as(CalibrationRecipe, Path(name), "calibration recipe")
    found = CALIBRATION_RECIPES.find(name)
    if found is None:
        raise ConfigError(f"calibration recipe '{name}' not found; known: {known_recipes()} (or give a YAML path)")
    with resources.as_file(found) as path:
        return load_yaml_as(CalibrationRecipe, path, "calibration recipe")
