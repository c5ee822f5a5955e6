"""``plan(mask)``: which stages run for a sensor mask, in order, with their tensors.

The same plan is executed over PyTorch stage modules (the reference) and over compiled engines
(deployment); parity tests compare the two for every mask. A plan is computed once per mask and
cached, so a sensor dropping out costs a dict lookup.

The stage structure of a model is described by a :class:`~edgemoe.core.stages.StageLayout`,
written into the bundle manifest at export and read back by the runtime, so the runtime never
needs the model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgemoe.core.mask import Mask, all_masks, full_mask, present
from edgemoe.core.stages import GATE, HEAD, StageLayout, encoder_stage, expert_stage, imputer_stage


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
