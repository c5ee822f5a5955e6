"""Declarative configs, validated up front: one strict base and one loader for every YAML file
(model configs, target profiles, calibration recipes, daemon configs).

Errors name the file and every offending key path (``sensors.2.shape``), so a typo fails before
any model is run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from edgemoe.core.errors import ConfigError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Unknown keys are errors; values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe(exc: ValidationError) -> str:
    """One clause per problem, each naming its key path."""
    return "; ".join(f"key '{'.'.join(map(str, e['loc'])) or '<root>'}': {e['msg']}" for e in exc.errors())


def validate_as(cls: type[T], data: Any, source: str) -> T:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc)}") from None


def load_yaml_as(cls: type[T], path: Path, what: str) -> T:
    """Read ``path`` as YAML and validate it as ``cls``; an empty file means all defaults."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return validate_as(cls, data if data is not None else {}, str(path))
