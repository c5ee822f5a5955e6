"""Methods: ``model.method`` in the config names a recipe of parts and training objectives.

Every method runs the same forward (:class:`~edgemoe.model.moe.MoEModel`); what differs is the
filler of missing sensors, the router, the experts' mixing rule, the readout and the losses that
shape them:

=========  ========  =======  ==========  =======  ==============================================
method     filler    routing  mixing      readout  objectives
=========  ========  =======  ==========  =======  ==============================================
smoe       drop      token    softmax     mean     load balancing (the zero-fill baseline)
dense      drop      token    softmax     mean     none: one expert, top-1 (dense late fusion)
flexmoe    constant  token    softmax     mean     load balancing + combination pull
confsmoe   imputer   token    confidence  slots    confidence regression, probe, gate regression
mars       drop      sample   softmax     mean     partial pass, residual router, distillation
=========  ========  =======  ==========  =======  ==============================================

``model.readout`` overrides a method's readout (:meth:`MoEModel.readout`).
``training.sensor_probe_weight`` > 0 adds per-sensor probes (:class:`SensorProbes`) to any method,
``training.solo_pass_weight`` > 0 a pass of each present sensor alone (:class:`SoloPasses`).
"""

from __future__ import annotations

from collections.abc import Callable

from edgemoe.core.errors import ConfigError
from edgemoe.core.schema import ModelConfig
from edgemoe.model.experts import ExpertBank, Mixing
from edgemoe.model.fillers import BankFiller, DropFiller, ImputerFiller
from edgemoe.model.moe import MoEModel
from edgemoe.model.objectives import (
    CombinationPull,
    ConfidenceRegression,
    LoadBalance,
    SensorProbes,
    SoloPasses,
)
from edgemoe.model.residual import ResidualGuidance
from edgemoe.model.routing import Router, sample_router, token_router

PULL_WEIGHT = 0.01  # Flex-MoE's combination pull


def _bank(config: ModelConfig, mixing: Mixing = "softmax") -> ExpertBank:
    spec = config.model
    return ExpertBank.of(mixing, spec.num_experts, spec.dim, spec.expert_hidden)


def _token_router(config: ModelConfig, noisy: bool | None = None) -> Router:
    spec = config.model
    return token_router(spec.dim, spec.num_experts, spec.gate, spec.top_k,
                        spec.noisy_gating if noisy is None else noisy)


def smoe(config: ModelConfig) -> MoEModel:
    return MoEModel(config, DropFiller(config), _token_router(config), _bank(config),
                    {"load_balance": LoadBalance(config.training.load_balance_weight)})


def dense(config: ModelConfig) -> MoEModel:
    """The sparse-MoE shape collapsed to one always-chosen expert: with top-1 of one expert the
    softmax weight is exactly 1, so every token goes through the same MLP."""
    spec = config.model.model_copy(update={"num_experts": 1, "top_k": 1, "noisy_gating": False})
    config = config.model_copy(update={"model": spec})
    return MoEModel(config, DropFiller(config), _token_router(config), _bank(config))


def flexmoe(config: ModelConfig) -> MoEModel:
    return MoEModel(config, BankFiller(config), _token_router(config), _bank(config), {
        "load_balance": LoadBalance(config.training.load_balance_weight),
        "combination_pull": CombinationPull(PULL_WEIGHT),
    })


def confsmoe(config: ModelConfig) -> MoEModel:
    """Routes without gate noise: the noise scale learns only through a load-balancing loss, which
    this method does not have, so noise would stay at its initial scale and make training routing
    mostly random while evaluation is deterministic. Reads out one slot per sensor, imputing the
    missing ones from the present sensors' expert outputs, unless ``model.readout`` says ``mean``."""
    if config.model.readout is None:
        config = config.model_copy(update={"model": config.model.model_copy(update={"readout": "slots"})})
    return MoEModel(config, ImputerFiller(config), _token_router(config, noisy=False), _bank(config, "confidence"),
                    {"confidence": ConfidenceRegression(config.model.dim, config.num_classes)})


def mars(config: ModelConfig) -> MoEModel:
    spec = config.model
    router = sample_router(spec.dim, spec.num_experts, spec.gate, spec.top_k, spec.noisy_gating)
    guidance = ResidualGuidance(spec.dim, spec.num_experts, config.num_sensors, spec.top_k)
    return MoEModel(config, DropFiller(config), router, _bank(config), {"residual": guidance})


METHODS: dict[str, Callable[[ModelConfig], MoEModel]] = {
    "smoe": smoe,
    "dense": dense,
    "flexmoe": flexmoe,
    "confsmoe": confsmoe,
    "mars": mars,
}


def build_model(config: ModelConfig) -> MoEModel:
    try:
        recipe = METHODS[config.model.method]
    except KeyError:
        raise ConfigError(
            f"key 'model.method': unknown method '{config.model.method}' (known: {sorted(METHODS)}; "
            "per-mask dedicated models are trained by 'edgemoe bench', one smoe per mask)"
        ) from None
    model = recipe(config)
    if config.training.sensor_probe_weight > 0:
        spec = config.model
        model.objectives["sensor_probes"] = SensorProbes(config.num_sensors, spec.tokens_per_sensor, spec.dim,
                                                         config.num_classes, config.training.sensor_probe_weight)
    if config.training.solo_pass_weight > 0:
        model.objectives["solo_passes"] = SoloPasses(config.training.solo_pass_weight)
    return model
