"""The accuracy suite: the benchmark run on every sensor-failure regime, with each regime's
headroom and ceiling, so a reader can tell which regimes are able to rank the methods.

Headroom = per-mask dedicated models minus the zero-fill sparse MoE (``smoe``), mean over masks
and seeds. A regime with less than :data:`MIN_HEADROOM` cannot separate methods (every method
lands between the two), so the report does not rank on it. The quick preset (CI) runs one regime
small and raises :class:`SaturatedBenchmark` when its headroom falls below the bar, so the
benchmark cannot saturate again without a failing check.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgemoe.bench.accuracy import DEDICATED, BenchResult, BenchSettings, run_benchmark
from edgemoe.core.errors import ConfigError, EdgeMoEError
from edgemoe.core.mask import all_masks
from edgemoe.core.schema import ModelConfig
from edgemoe.data.regimes import REGIMES, Regime, get_regime

BASELINE = "smoe"
MIN_HEADROOM = 0.05
# What a method must do on a regime that ranks methods: beat zero-fill smoe by GAIN_BAR (mean over
# masks and seeds) and close CLOSED_BAR of the headroom to the dedicated models.
GAIN_BAR = 0.03
CLOSED_BAR = 0.6
SUITES: dict[str, tuple[str, ...]] = {
    "failures": ("nuisance", "units", "fleet", "robot4"),
    **{name: (name,) for name in ("nuisance", "units", "fleet", "robot4")},
}
SUITE_EPOCHS = 8  # the suite's training budget per model (see regimes.SIZES)
# The CI preset: the nuisance regime, one seed, the two methods that define headroom: exactly
# seed 0 of the full suite's nuisance regime.
QUICK_REGIME = "nuisance"
QUICK: dict[str, Any] = {"methods": (BASELINE, DEDICATED), "seeds": (0,), "rates": (), "epochs": SUITE_EPOCHS}


class SaturatedBenchmark(EdgeMoEError):
    """A regime meant to discriminate methods left no headroom between zero-fill and dedicated."""


@dataclass
class RegimeResult:
    regime: Regime
    bench: BenchResult
    ceiling: dict[int, float] | None  # Bayes-optimal accuracy per mask
    capped: list[int]

    @property
    def headroom(self) -> float:
        return headroom(self.bench)

    @property
    def ranks_methods(self) -> bool:
        return self.headroom >= MIN_HEADROOM


@dataclass
class SuiteResult:
    name: str
    regimes: list[RegimeResult] = field(default_factory=list)
    seconds: float = 0.0
    load: list[float] = field(default_factory=list)  # 1-min load average at each regime's start and at the end

    @property
    def cpu_seconds(self) -> float:
        return sum(r.bench.cpu_seconds for r in self.regimes)


def seed_mean(result: BenchResult, method: str, key: str = "accuracy") -> dict[int, float]:
    """``{mask: mean over seeds}`` of one per-mask value of ``method``."""
    per_seed = result.masks[method].values()
    return {c: float(np.mean([per[c][key] for per in per_seed])) for c in all_masks(result.config.num_sensors)}


def headroom(result: BenchResult) -> float:
    """Dedicated minus zero-fill SMoE, mean over masks and seeds (NaN if either did not run)."""
    if BASELINE not in result.masks or DEDICATED not in result.masks:
        return float("nan")
    top, base = seed_mean(result, DEDICATED), seed_mean(result, BASELINE)
    return float(np.mean([top[c] - base[c] for c in top]))


def headroom_closed(result: BenchResult, method: str) -> float:
    """(method - smoe) / (dedicated - smoe) over the mask-and-seed means."""
    room = headroom(result)
    if not np.isfinite(room) or room <= 0:
        return float("nan")
    mean = lambda m: float(np.mean(list(seed_mean(result, m).values())))  # noqa: E731
    return (mean(method) - mean(BASELINE)) / room


def mean_over_masks(result: BenchResult, method: str, sensors: int | None = None) -> float:
    """Mean over seeds and masks (only masks with ``sensors`` present, if given)."""
    acc = seed_mean(result, method)
    return float(np.mean([v for c, v in acc.items() if sensors is None or bin(c).count("1") == sensors]))


def best_method(result: BenchResult) -> str | None:
    """The single-model method with the highest mean over masks (not smoe, not the dedicated models)."""
    candidates = [m for m in result.masks if m not in (BASELINE, DEDICATED)]
    return max(candidates, key=lambda m: mean_over_masks(result, m), default=None)


def best_overall(results: list[BenchResult]) -> str | None:
    """The single-model method run on every given regime whose worst headroom closed over them is
    highest: the one configuration a user would ship without knowing the regime."""
    shared = set.intersection(*(set(r.masks) for r in results)) - {BASELINE, DEDICATED} if results else set()
    return max(sorted(shared), key=lambda m: min(headroom_closed(r, m) for r in results), default=None)


def run_suite(name: str, config: ModelConfig, settings: BenchSettings, scale: float = 1.0,
              data_seed: int = 0, log: Callable[[str], None] = print,
              on_regime: Callable[[SuiteResult], object] = lambda suite: None) -> SuiteResult:
    """Every regime of suite ``name``: generate its data (seeded), run the benchmark, attach the
    ceiling and capped masks. ``on_regime`` sees the suite after each regime (e.g. to write the
    report so far, so a long run that is stopped keeps the regimes it finished)."""
    started = time.perf_counter()
    suite = SuiteResult(name)
    for regime in (get_regime(r) for r in suite_regimes(name)):
        log(f"regime {regime.name}: {regime.summary}")
        suite.load.append(os.getloadavg()[0])
        data = regime.generate(config, data_seed, scale)
        bench = run_benchmark(config, data, settings, log=lambda line, r=regime.name: log(f"  {r} {line}"))
        suite.regimes.append(RegimeResult(regime, bench, regime.ceiling(config), regime.capped(config)))
        log(f"regime {regime.name}: headroom {100 * suite.regimes[-1].headroom:.1f} pts")
        suite.seconds = time.perf_counter() - started
        on_regime(suite)
    suite.load.append(os.getloadavg()[0])
    suite.seconds = time.perf_counter() - started
    return suite


def run_quick(config: ModelConfig, settings: BenchSettings, log: Callable[[str], None] = print) -> SuiteResult:
    """The CI preset: one regime, small; raises :class:`SaturatedBenchmark` below the bar."""
    quick = replace(settings, **QUICK)
    suite = run_suite(QUICK_REGIME, config, quick, log=log)
    result = suite.regimes[0]
    if not result.ranks_methods:
        raise SaturatedBenchmark(
            f"regime '{result.regime.name}' (quick preset): headroom {100 * result.headroom:.1f} pts "
            f"(dedicated minus {BASELINE}) is below {100 * MIN_HEADROOM:.0f} pts; the benchmark can no "
            "longer tell methods apart (see docs/dataset.md)")
    return suite


def suite_regimes(name: str) -> tuple[str, ...]:
    """A suite's regimes: a named suite, or regime names joined by ',' or '+' (to rerun a few)."""
    if name in SUITES:
        return SUITES[name]
    names = tuple(n.strip() for n in name.replace("+", ",").split(",") if n.strip())
    unknown = [n for n in names if n not in REGIMES]
    if not names or unknown:
        raise ConfigError(f"unknown suite or regime '{', '.join(unknown) or name}' "
                          f"(suites: {', '.join(SUITES)}; regimes: {', '.join(REGIMES)})")
    return names


def suite_name(name: str) -> str:
    """The name results are filed under: a named suite's, or its regimes joined by '+'."""
    return name if name in SUITES else "+".join(suite_regimes(name))
