"""Method registry: ``model.method`` in the config names an entry here."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgemoe.core.errors import ConfigError
from edgemoe.core.schema import ModelConfig
from edgemoe.model.confsmoe import ConfSMoE
from edgemoe.model.dense import DenseFusion
from edgemoe.model.flexmoe import FlexMoE
from edgemoe.model.mars import ResidualGuidedMoE
from edgemoe.model.smoe import SparseMoE

METHODS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "smoe": SparseMoE,
    "dense": DenseFusion,
    "flexmoe": FlexMoE,
    "confsmoe": ConfSMoE,
    "mars": ResidualGuidedMoE,
}


def build_model(config: ModelConfig) -> SparseMoE:
    try:
        factory = METHODS[config.model.method]
    except KeyError:
        raise ConfigError(
            f"key 'model.method': unknown method '{config.model.method}' (known: {sorted(METHODS)}; "
            "per-mask dedicated models are trained by 'edgemoe bench', one smoe per mask)"
        ) from None
    return factory(config)  # type: ignore[return-value]
