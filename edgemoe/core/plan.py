"""``plan(mask)``: what one sensor mask runs, decided once per mask from the stage layout.

A plan says which sensors' encoders run, which missing sensors get filler tokens, and in which
order the sensors' tokens sit in the token buffer; everything else (the gate, the candidate
experts, the head, the tensors) is the same for every mask and lives in the
:class:`~edgemoe.core.stages.StageLayout`. The runtime compiles every mask's plan against its
loaded engines at load (``edgemoe.runtime.executor``), so a sensor dropping out costs a table
lookup; the PyTorch reference runs the same compiled plans over stage modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgemoe.core.mask import Mask, all_masks, full_mask, present
from edgemoe.core.stages import StageLayout


@dataclass(frozen=True)
class Plan:
    """The sensors one mask runs. Experts are candidates: only those that receive tokens run."""

    mask: Mask
    present: tuple[int, ...]  # sensors whose encoders run, in bit order
    filled: tuple[int, ...]  # missing sensors given filler tokens (stored or imputed); none for 'drop'
    # sensors whose tokens fill the token buffer, in order (the present ones only when the layout
    # imputes the filled sensors after the experts, into their readout slots)
    token_sensors: tuple[int, ...]


def build_plan(layout: StageLayout, mask: Mask) -> Plan:
    if not 0 < mask <= full_mask(layout.num_sensors):
        raise ValueError(f"mask {mask} out of range 1..{full_mask(layout.num_sensors)}")
    here = tuple(present(mask, layout.num_sensors))
    if layout.filler == "drop":
        return Plan(mask, here, (), here)
    gone = tuple(i for i in range(layout.num_sensors) if i not in here)
    if layout.imputes_after_experts:
        return Plan(mask, here, gone, here)
    return Plan(mask, here, gone, tuple(range(layout.num_sensors)))


def all_plans(layout: StageLayout) -> dict[Mask, Plan]:
    """Every mask's plan, in mask order."""
    return {mask: build_plan(layout, mask) for mask in all_masks(layout.num_sensors)}
