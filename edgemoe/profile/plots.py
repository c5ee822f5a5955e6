"""PNG plots of a profile run: per-mask p50/p99 bars, latency CDF, per-stage stacked breakdown.

Imported only when matplotlib is installed (``report.write_reports`` skips plots otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_run(run: dict[str, Any], out: Path, prefix: str) -> list[Path]:
    return [_bars(run, out / f"{prefix}_latency.png"), _cdf(run, out / f"{prefix}_cdf.png"),
            _stages(run, out / f"{prefix}_stages.png")]


def _labels(run: dict[str, Any]) -> list[str]:
    return [v["label"] for v in run["masks"].values()]


def _bars(run: dict[str, Any], path: Path) -> Path:
    masks = list(run["masks"].values())
    x = np.arange(len(masks))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(masks)), 4))
    ax.bar(x - 0.2, [m["e2e"]["p50"] for m in masks], 0.4, label="p50")
    ax.bar(x + 0.2, [m["e2e"]["p99"] for m in masks], 0.4, label="p99")
    ax.set_xticks(x, _labels(run), rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("frame latency (µs)")
    ax.set_title(f"Runtime.infer per mask ({run['label']})")
    ax.legend()
    return _save(fig, path)


def _cdf(run: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in run["masks"].values():
        xs = np.asarray(m["cdf_us"])
        ax.plot(xs, np.linspace(0, 1, xs.size), lw=1, label=m["label"])
    ax.set_xscale("log")
    ax.set_xlabel("frame latency (µs)")
    ax.set_ylabel("fraction of frames")
    ax.set_title("latency CDF per mask")
    if len(run["masks"]) <= 16:
        ax.legend(fontsize=5, ncol=2)
    return _save(fig, path)


def _stages(run: dict[str, Any], path: Path) -> Path:
    masks = list(run["masks"].values())
    groups = {"encoders": lambda s: s.startswith("encoder"), "imputers": lambda s: s.startswith("imputer"),
              "gate": lambda s: s == "gate", "experts": lambda s: s.startswith("expert"),
              "head": lambda s: s == "head"}
    x = np.arange(len(masks))
    bottom = np.zeros(len(masks))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(masks)), 4))
    for group, member in groups.items():
        # a stage's mean time per frame = its p50 when it runs × how often it runs
        h = np.array([sum(v["p50"] * v["ran_fraction"] for s, v in m["stages"].items() if member(s)) for m in masks])
        if h.any():
            ax.bar(x, h, 0.6, bottom=bottom, label=group)
            bottom += h
    ax.bar(x, [m["dispatch"]["p50"] for m in masks], 0.6, bottom=bottom, label="dispatch", color="0.6")
    ax.set_xticks(x, _labels(run), rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("µs per frame (p50)")
    ax.set_title("where a frame's time goes")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
