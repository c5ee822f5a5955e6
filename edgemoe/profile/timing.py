"""Timing primitives: an engine wrapper that clocks each stage, and latency summaries.

A stage's time is ``launch`` + ``wait`` measured around the inner engine, so it holds the
backend's own call overhead and compute; everything else in a frame is dispatch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np

from edgemoe.core.engine import Engine, TensorSpec


class TimedEngine:
    """Wraps an engine; each ``launch``..``wait`` pair adds one duration (ns) to ``spent``."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.inputs: tuple[TensorSpec, ...] = inner.inputs
        self.outputs: tuple[TensorSpec, ...] = inner.outputs
        self.spent: list[int] = []  # one entry per run since the last reset
        self._started = self._launched = 0

    def input(self, name: str, shape: Sequence[int]) -> np.ndarray:
        return self.inner.input(name, shape)

    def launch(self) -> None:
        self._started = time.perf_counter_ns()
        self.inner.launch()
        self._launched = time.perf_counter_ns()

    def wait(self) -> Mapping[str, np.ndarray]:
        begun = time.perf_counter_ns()
        out = self.inner.wait()
        self.spent.append(self._launched - self._started + time.perf_counter_ns() - begun)
        return out

    def warmup(self) -> None:
        self.inner.warmup()

    def close(self) -> None:
        self.inner.close()


def percentiles(samples_s: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p90/p99/max/mean in microseconds (the unit of every latency in a profile)."""
    us = np.asarray(samples_s, np.float64) * 1e6
    if us.size == 0:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan"),
                "mean": float("nan"), "n": 0}
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(us.max()),
            "mean": float(us.mean()), "n": int(us.size)}


Wait = Literal["sleep", "spin", "prewarm"]


def back_to_back(call: Callable[[], object], n: int) -> list[float]:
    """Seconds per ``call``, calls made one right after another (the tight-loop figure)."""
    clock, took = time.perf_counter, []
    for _ in range(n):
        t0 = clock()
        call()
        took.append(clock() - t0)
    return took


def at_rate(call: Callable[[], object], n: int, hz: float, wait: Wait = "sleep", lead_s: float = 0.002) -> list[float]:
    """Seconds per ``call`` made once per tick of ``hz``, as a sensor loop makes it. ``sleep``
    sleeps to each tick; ``spin`` busy-waits to it (no thread wake-up); ``prewarm`` makes an untimed
    call ``lead_s`` before each tick, then sleeps to the tick (the daemon's ``loop.prewarm_ms``)."""
    clock, took, tick = time.perf_counter, [], time.perf_counter()
    for _ in range(n):
        tick += 1 / hz
        if wait == "prewarm":
            time.sleep(max(0.0, tick - lead_s - clock()))
            call()
        if wait == "spin":
            while clock() < tick:
                pass
        else:
            time.sleep(max(0.0, tick - clock()))
        t0 = clock()
        call()
        took.append(clock() - t0)
    return took


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def peak_rss_bytes() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class _NullEngine:
    name = "null"
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    _out: dict[str, np.ndarray] = {}

    def launch(self) -> None:
        pass

    def wait(self) -> Mapping[str, np.ndarray]:
        return self._out


def timer_overhead_s(calls: int = 2000) -> float:
    """What one timed stage call adds to a frame beyond the engine's own launch + wait (the
    wrapper's Python), so a report can say how much of 'dispatch' the measurement itself is."""
    null = _NullEngine()
    timed = TimedEngine(null)  # type: ignore[arg-type]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            timed.launch()
            timed.wait()
        wrapped = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(calls):
            null.launch()
            null.wait()
        bare = time.perf_counter() - t0
        timed.spent.clear()
        best = min(best, (wrapped - bare) / calls)
    return max(best, 0.0)
