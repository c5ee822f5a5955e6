"""Automatic precision per stage, from measured sensitivity.

Each stage is swapped alone to INT8 (every other stage fp32) and scored on every validation mask;
its cost is the drop in accuracy points versus fp32, mean over masks and on the worst mask. A stage
whose INT8 cost fits the per-stage budget is INT8; otherwise FP16 if FP16's cost fits its budget;
otherwise FP32. Per-stage costs do not simply add up, so the combined assignment is then scored
as a whole and, while it breaks the overall INT8 budget, the INT8 stage with the largest measured
cost falls back to its next precision. Every number used ends up in the manifest as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edgemoe.calibrate.recipe import Budgets
from edgemoe.train.evaluate import EvalTable

Scorer = Callable[[Mapping[str, str]], EvalTable]  # assignment -> per-mask table


@dataclass(frozen=True)
class Cost:
    """Accuracy points lost versus fp32: mean over masks, worst mask, and which mask."""

    mean: float
    worst: float
    worst_mask: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean_drop_points": round(self.mean, 4), "worst_drop_points": round(self.worst, 4),
                "worst_mask": self.worst_mask}


def cost(reference: EvalTable, table: EvalTable) -> Cost:
    drops = {r.mask: 100.0 * (reference.accuracy_of(r.mask) - r.accuracy) for r in table.rows}
    worst_mask = max(drops, key=lambda m: drops[m])
    return Cost(sum(drops.values()) / len(drops), drops[worst_mask], worst_mask)


@dataclass
class PrecisionChoice:
    stage: str
    choice: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AutoPrecision:
    choices: dict[str, PrecisionChoice]
    reference: EvalTable
    final: EvalTable
    final_cost: Cost
    demoted: list[str]

    @property
    def assignment(self) -> dict[str, str]:
        return {s: c.choice for s, c in self.choices.items()}


def choose_precisions(stages: Sequence[str], score: Scorer, budgets: Budgets,
                      log: Callable[[str], None] = lambda line: None) -> AutoPrecision:
    reference = score({})
    choices: dict[str, PrecisionChoice] = {}
    int8_cost: dict[str, Cost] = {}
    for stage in stages:
        int8_cost[stage] = c8 = cost(reference, score({stage: "int8"}))
        evidence: dict[str, Any] = {"int8_alone": c8.to_dict()}
        log(f"  {stage:<18} int8 alone costs {c8.mean:+.2f} mean, {c8.worst:+.2f} worst-mask points")
        if c8.mean <= budgets.int8_stage_mean and c8.worst <= budgets.int8_stage_worst:
            choices[stage] = PrecisionChoice(stage, "int8", f"int8 alone costs {c8.mean:.2f} mean / {c8.worst:.2f} "
                                             f"worst points, within {budgets.int8_stage_mean} / "
                                             f"{budgets.int8_stage_worst}", evidence)
            continue
        choices[stage] = _fallback(stage, reference, score, budgets, evidence, "int8 alone over budget", log)
    final = score({s: c.choice for s, c in choices.items()})
    final_cost = cost(reference, final)
    demoted: list[str] = []
    while final_cost.mean > budgets.int8_mean or final_cost.worst > budgets.int8_worst:
        int8 = [s for s, c in choices.items() if c.choice == "int8"]
        if not int8:
            break
        worst = max(int8, key=lambda s: (int8_cost[s].worst, int8_cost[s].mean))
        log(f"  combined assignment costs {final_cost.mean:+.2f} mean, {final_cost.worst:+.2f} worst: over budget: "
            f"{worst} leaves int8")
        choices[worst] = _fallback(worst, reference, score, budgets, choices[worst].evidence,
                                   f"combined assignment cost {final_cost.mean:.2f} mean / {final_cost.worst:.2f} "
                                   "worst points, over the overall int8 budget, and this stage costs most", log)
        demoted.append(worst)
        final = score({s: c.choice for s, c in choices.items()})
        final_cost = cost(reference, final)
    return AutoPrecision(choices, reference, final, final_cost, demoted)


def _fallback(stage: str, reference: EvalTable, score: Scorer, budgets: Budgets, evidence: dict[str, Any],
              why: str, log: Callable[[str], None]) -> PrecisionChoice:
    c16 = cost(reference, score({stage: "fp16"}))
    evidence["fp16_alone"] = c16.to_dict()
    log(f"  {stage:<18} fp16 alone costs {c16.mean:+.2f} mean, {c16.worst:+.2f} worst-mask points")
    if c16.worst <= budgets.fp16_worst:
        return PrecisionChoice(stage, "fp16", f"{why}; fp16 alone costs at most {c16.worst:.2f} points, "
                               f"within {budgets.fp16_worst}", evidence)
    return PrecisionChoice(stage, "fp32", f"{why}; fp16 alone costs {c16.worst:.2f} points on its worst mask, "
                           f"over {budgets.fp16_worst}", evidence)
