"""``plan(mask)``: which stages run for a sensor mask, in order, with their tensors.

The same plan is executed over PyTorch stage modules (the reference) and over compiled engines
(deployment); parity tests compare the two for every mask. A plan is computed once per mask and
cached, so a sensor dropping out costs a dict lookup.

The stage structure of a model is described by a :class:`StageLayout`, written into the bundle
manifest at export and read back by the runtime, so the runtime never needs the model code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from edgemoe.core.errors import BundleError
from edgemoe.core.mask import Mask, all_masks, full_mask, present

# How a missing sensor's tokens are provided.
#  drop     - no tokens (equivalent to zero tokens excluded from the masked mean pool)
#  constant - a stored tensor per sensor (zero-fill, prototype or learned bank), shipped in the bundle
#  imputer  - an ``imputer[m]`` stage refines the stored tensor from the present sensors' tokens
Filler = Literal["drop", "constant", "imputer"]
# Mixing weight of a routed expert: softmax over the top-k gate scores, or the expert's own
# confidence output (decoupled confidence gating).
Mixing = Literal["softmax", "confidence"]
# Unit that the gate scores: each token, or each sample's pooled tokens.
RouteBy = Literal["token", "sample"]


def encoder_stage(sensor: str) -> str:
    return f"encoder[{sensor}]"


def imputer_stage(sensor: str) -> str:
    return f"imputer[{sensor}]"


def expert_stage(index: int) -> str:
    return f"expert[{index}]"


GATE = "gate"
HEAD = "head"


def fused_stage(mask: int) -> str:
    """The stage name of a mask's fused engine (its whole forward in one graph): ``fused[5]``."""
    return f"fused[{mask}]"


FUSED_DIMS = {"batch": 1}  # fused engines serve single frames; batches take the staged plan


def stage_file_stem(stage: str) -> str:
    """``expert[3]`` -> ``expert_3`` for file names."""
    return stage.replace("[", "_").replace("]", "")


@dataclass(frozen=True)
class StageLayout:
    """Everything the executor needs to know about a model's stages, and nothing about torch."""

    sensors: tuple[str, ...]
    tokens_per_sensor: int
    dim: int
    num_experts: int
    top_k: int
    num_classes: int
    filler: Filler = "drop"
    mixing: Mixing = "softmax"
    route_by: RouteBy = "token"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> StageLayout:
        try:
            values = dict(data)
            values["sensors"] = tuple(values["sensors"])  # type: ignore[arg-type]
            return cls(**values)  # type: ignore[arg-type]
        except (KeyError, TypeError) as exc:
            raise BundleError(f"manifest 'layout' is malformed: {exc}") from None

    @property
    def num_sensors(self) -> int:
        return len(self.sensors)

    def stage_names(self) -> list[str]:
        """Every stage of the model, in execution order."""
        names = [encoder_stage(s) for s in self.sensors]
        if self.filler == "imputer":
            names += [imputer_stage(s) for s in self.sensors]
        names.append(GATE)
        names += [expert_stage(e) for e in range(self.num_experts)]
        names.append(HEAD)
        return names

    def max_dims(self, max_batch: int) -> dict[str, int]:
        """Largest size of each symbolic dim, for buffers and optimisation profiles."""
        tokens = max_batch * self.num_sensors * self.tokens_per_sensor
        dims = {"batch": max_batch, "tokens": tokens}
        if self.filler == "imputer":  # an imputer sees the present sensors' tokens
            dims["context"] = max(1, (self.num_sensors - 1) * self.tokens_per_sensor)
        return dims


@dataclass(frozen=True)
class Plan:
    """The stages one mask runs. Experts are candidates: only those that receive tokens run."""

    mask: Mask
    present: tuple[int, ...]
    encoders: tuple[str, ...]
    missing: tuple[int, ...]
    fillers: tuple[tuple[int, str], ...]  # (sensor index, "constant" | stage name)
    token_sensors: tuple[int, ...]  # sensors whose tokens fill the token buffer, in order
    gate: str
    experts: tuple[str, ...]
    head: str
    stages: tuple[str, ...] = field(default=())  # every stage that may run, for load checks

    @property
    def tokens_per_sample(self) -> int:
        return len(self.token_sensors)


def build_plan(layout: StageLayout, mask: Mask) -> Plan:
    if not 0 < mask <= full_mask(layout.num_sensors):
        raise ValueError(f"mask {mask} out of range 1..{full_mask(layout.num_sensors)}")
    here = tuple(present(mask, layout.num_sensors))
    gone = tuple(i for i in range(layout.num_sensors) if i not in here)
    fillers: tuple[tuple[int, str], ...] = ()
    if layout.filler == "constant":
        fillers = tuple((i, "constant") for i in gone)
    elif layout.filler == "imputer":
        fillers = tuple((i, imputer_stage(layout.sensors[i])) for i in gone)
    token_sensors = here if layout.filler == "drop" else tuple(range(layout.num_sensors))
    encoders = tuple(encoder_stage(layout.sensors[i]) for i in here)
    experts = tuple(expert_stage(e) for e in range(layout.num_experts))
    stages = encoders + tuple(s for _, s in fillers if s != "constant") + (GATE,) + experts + (HEAD,)
    return Plan(mask, here, encoders, gone, fillers, token_sensors, GATE, experts, HEAD, stages)


class PlanCache:
    """All plans, computed up front: the hot path only looks one up."""

    def __init__(self, layout: StageLayout) -> None:
        self.layout = layout
        self._plans = {m: build_plan(layout, m) for m in all_masks(layout.num_sensors)}

    def __getitem__(self, mask: Mask) -> Plan:
        try:
            return self._plans[mask]
        except KeyError:
            raise ValueError(
                f"mask {mask} out of range 1..{full_mask(self.layout.num_sensors)}"
            ) from None

    def __len__(self) -> int:
        return len(self._plans)
