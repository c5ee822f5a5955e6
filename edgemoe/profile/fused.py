"""Fused hot-mask engines: what each one gains and costs, and which masks are worth one.

A fused engine runs one mask's whole forward as a single call, so it saves the staged plan's
dispatch and per-call overhead at the price of a second copy of the weights it uses. For every
mask with a fused engine in the bundle, frames alternate between the fused engine and the staged
plan of the same bundle (the order flips every frame, so machine load and cache state hit both
alike); the memory paid is the engine file and the RSS grown by loading it once more.

The choice ranks masks by the latency saved per frame on average — the gain times how often the
mask occurs, declared or counted by the daemon (``edgemoe_mask_predictions_total``) — per MiB
paid, and takes them while the memory budget lasts. A mask whose fused engine is not faster is
never chosen. ``edgemoe export --fuse`` / ``edgemoe build --fuse`` read the written choice file.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgemoe.core.errors import ConfigError
from edgemoe.core.mask import mask_label, parse_mask
from edgemoe.core.stages import fused_stage
from edgemoe.engines.loader import EngineLoader
from edgemoe.profile.timing import percentiles, rss_bytes
from edgemoe.runtime.runtime import Runtime

CHOICE_FILE = "fused_choice.json"
MASK_COUNTER = "edgemoe_mask_predictions"


def measure_fused(runtime: Runtime, masks: Sequence[int], frame: Callable[[int, int], Mapping[str, Any]],
                  frames: int, warmup: int) -> dict[int, dict[str, Any]]:
    """Per fused mask: fused and staged latency of the same frames, and the memory paid."""
    bundle = runtime.bundle
    staged = Runtime(dataclasses.replace(bundle, fused={}))  # the same engines, no fused path
    clock = time.perf_counter
    out = {}
    for mask in (m for m in masks if m in bundle.fused):
        took: dict[str, list[float]] = {"fused": [], "staged": []}
        for i in range(warmup + frames):
            data = frame(mask, i)
            order = (("fused", runtime), ("staged", staged)) if i % 2 else (("staged", staged), ("fused", runtime))
            for name, rt in order:
                t0 = clock()
                rt.infer(data)
                if i >= warmup:
                    took[name].append(clock() - t0)
        fused, stag = percentiles(took["fused"]), percentiles(took["staged"])
        entry = bundle.manifest.fused[mask]
        out[mask] = {"fused": fused, "staged": stag, "gain_us": stag["p50"] - fused["p50"],
                     "experts": entry.experts, "precision": entry.precision,
                     "ratio_p50": fused["p50"] / stag["p50"], **_memory(bundle.loaders[fused_stage(mask)])}
    return out


def _memory(loader: EngineLoader) -> dict[str, float]:
    """The engine file and the RSS grown by loading (and warming) the fused engine once more."""
    before = rss_bytes()
    engine = loader()
    engine.warmup()
    grown = rss_bytes() - before
    engine.close()
    return {"file_kib": loader.path.stat().st_size / 1024, "rss_mib": max(grown, 0) / 2**20}


def choose_fused(measured: Mapping[int, Mapping[str, Any]], frequencies: Mapping[int, float] | None = None,
                 budget_mib: float | None = None) -> dict[str, Any]:
    """The masks worth a fused engine: best average saving per MiB first, within the budget."""
    freq = _normalised(frequencies, list(measured))
    rows: dict[str, dict[str, Any]] = {}
    for mask, m in measured.items():
        cost = max(m["rss_mib"], m["file_kib"] / 1024, 1e-6)
        saved = freq.get(mask, 0.0) * m["gain_us"]
        rows[str(mask)] = {"gain_us": m["gain_us"], "frequency": freq.get(mask, 0.0), "cost_mib": cost,
                           "saved_us_per_frame": saved, "chosen": False}
    spent = 0.0
    for key, row in sorted(rows.items(), key=lambda kv: -kv[1]["saved_us_per_frame"] / kv[1]["cost_mib"]):
        if row["gain_us"] <= 0:
            row["why"] = "not faster than the staged plan"
        elif row["frequency"] == 0:
            row["why"] = "never seen"
        elif budget_mib is not None and spent + row["cost_mib"] > budget_mib:
            row["why"] = f"over the budget ({spent:.2f} of {budget_mib:.2f} MiB spent)"
        else:
            row["chosen"], row["why"] = True, "saves latency within the budget"
            spent += row["cost_mib"]
    chosen = sorted(int(k) for k, r in rows.items() if r["chosen"])
    return {"masks": chosen, "budget_mib": budget_mib, "spent_mib": spent,
            "frequencies": "uniform" if frequencies is None else "given",
            "saved_us_per_frame": sum(r["saved_us_per_frame"] for r in rows.values() if r["chosen"]),
            "rows": rows}


def _normalised(frequencies: Mapping[int, float] | None, masks: list[int]) -> dict[int, float]:
    if frequencies is None:
        return {m: 1.0 / len(masks) for m in masks} if masks else {}
    total = sum(frequencies.values())
    if total <= 0:
        raise ConfigError("mask frequencies: every count is zero")
    return {m: c / total for m, c in frequencies.items()}


def read_frequencies(path: Path, sensor_names: Sequence[str]) -> dict[int, float]:
    """Mask frequencies from a JSON ``{mask: count}`` (masks as labels or ints) or from the
    daemon's ``/metrics`` text (``edgemoe_mask_predictions_total{mask="camera+imu"}``)."""
    text = Path(path).read_text()
    try:
        if path.suffix == ".json":
            return {parse_mask(str(k), sensor_names): float(v) for k, v in json.loads(text).items()}
        from prometheus_client.parser import text_string_to_metric_families

        counts = {parse_mask(s.labels["mask"], sensor_names): float(s.value)
                  for family in text_string_to_metric_families(text) if family.name == MASK_COUNTER
                  for s in family.samples if s.name.endswith("_total")}
    except (ValueError, KeyError, AttributeError, ConfigError) as exc:
        raise ConfigError(f"{path}: cannot read mask frequencies ({exc}); want a JSON "
                          f"{{mask: count}} or the daemon's /metrics text") from None
    if not counts:
        raise ConfigError(f"{path}: no {MASK_COUNTER}_total samples (scrape a daemon that has made predictions)")
    return counts


def write_choice(choice: Mapping[str, Any], out: Path, sensor_names: Sequence[str]) -> Path:
    """``fused_choice.json``: what ``edgemoe export/build --fuse FILE`` read (``masks``), and why."""
    path = out / CHOICE_FILE
    body = {**choice, "labels": [mask_label(m, sensor_names) for m in choice["masks"]]}
    path.write_text(json.dumps(body, indent=1) + "\n")
    return path


def summary_row(mask: int, m: Mapping[str, Any], row: Mapping[str, Any], names: Sequence[str]) -> str:
    """One Markdown table row of the fused section."""
    form = f"{m.get('experts', 'dense')}, {m.get('precision', 'fp32')}"  # profiles before both were recorded
    return (f"| {mask_label(mask, names)} | {form} | {m['staged']['p50']:.1f} | {m['fused']['p50']:.1f} | "
            f"{m['gain_us']:.1f} | {m['ratio_p50']:.2f} | {m['file_kib']:.0f} | {m['rss_mib']:.2f} | "
            f"{row['frequency']:.3f} | {'yes' if row['chosen'] else 'no'} ({row['why']}) |")

