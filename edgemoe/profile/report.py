"""Profile reports: JSON (everything), Markdown (the tables a person reads), PNG plots, and the
ratio tables of ``edgemoe profile compare``.

Plots need matplotlib; on a device without it the JSON and Markdown are still written and the
Markdown says why there are no plots.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from math import nan
from pathlib import Path
from typing import Any

from edgemoe.core.errors import ConfigError
from edgemoe.profile.fused import choose_fused, summary_row

REPORT_JSON = "profile.json"
REPORT_MD = "profile.md"


def write_reports(runs: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """``profile.json`` + ``profile.md`` + plots per run under ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / REPORT_JSON]
    (out / REPORT_JSON).write_text(json.dumps({"runs": list(runs)}, indent=1))
    plots: dict[int, list[Path]] = {}
    plot_note = None
    try:
        from edgemoe.profile.plots import plot_run
    except ImportError as exc:
        plot_note = f"plots skipped: {exc} (pip install matplotlib)"
    else:
        for i, run in enumerate(runs):
            plots[i] = plot_run(run, out, prefix=f"{i}_{run['label']}")
            written += plots[i]
    lines = []
    for i, run in enumerate(runs):
        lines += markdown(run, [p.name for p in plots.get(i, [])], plot_note)
    (out / REPORT_MD).write_text("\n".join(lines) + "\n")
    written.append(out / REPORT_MD)
    return written


def load_runs(path: Path) -> list[dict[str, Any]]:
    """A profile JSON, or a directory holding one."""
    path = Path(path)
    file = path / REPORT_JSON if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"no profile at {file}: run 'edgemoe profile ENGINES --out DIR' first")
    data = json.loads(file.read_text())
    if "runs" not in data or not data["runs"]:
        raise ConfigError(f"{file} is not an edgemoe profile (no 'runs')")
    return list(data["runs"])


def _us(x: float) -> str:
    return f"{x:.1f}"


def markdown(run: dict[str, Any], plots: Sequence[str], plot_note: str | None) -> list[str]:
    env, cold, mem, s = run["environment"], run["cold_start"], run["memory"], run["summary"]
    lines = [
        f"# Latency profile: {run['engines']} ({run['label']}, {run['backend']}, target {run['target']})",
        "",
        f"Created {run['created']}. All latencies are batch-1 `Runtime.infer` calls, in µs.",
        "",
        "## Environment",
        "",
        f"- CPU: {env['cpu_model']}; {env['cpu_count']} cores, {env['usable_cpus']} usable by this process; "
        f"load average at the end {env['load_average']}",
        f"- Python {env['python']}, numpy {env['numpy']}, onnxruntime {env['onnxruntime']} "
        f"(providers {env['onnxruntime_providers']}); session settings {env['onnxruntime_settings']}",
        f"- thread env: {env['thread_env'] or 'none set'}",
        f"- nvpmodel: {_tool(env['jetson']['nvpmodel'])}; jetson_clocks: {_tool(env['jetson']['jetson_clocks'])}",
        f"- tegrastats: {_tool(env.get('tegrastats', {}))}; GPU memory: {_tool(env['gpu_memory'])}",
        "",
        "## Summary",
        "",
        f"- cold start {cold['total_s']:.3f} s (load {cold['load_s']:.3f}, warm-up {cold['warmup_s']:.3f}, "
        f"prepare {cold['prepare_s']:.4f}, first frame {_us(cold['first_frame_us'])} µs)",
        f"- memory: RSS {mem['rss_before_load_mib']:.1f} → {mem['rss_after_load_mib']:.1f} MiB after load "
        f"(+{mem['rss_load_delta_mib']:.1f} MiB for {mem['engines']} engines), peak {mem['peak_rss_mib']:.1f} MiB",
        f"- e2e p50 {_us(s['e2e_p50_us']['min'])}–{_us(s['e2e_p50_us']['max'])} µs over masks; worst p99 "
        f"{_us(s['e2e_p99_us_max'])} µs",
        f"- dispatch overhead (frame − Σ stages), p50 fraction of frame time: worst "
        f"{100 * s['dispatch_fraction_p50_max']:.1f}% ({s['dispatch_fraction_p50_worst_mask']}); "
        f"{100 * s['dispatch_fraction_p50_max_without_timer']:.1f}% without the timing wrappers' own cost",
        f"- first frame after a mask switch / steady p50 of that mask: p50 {s['switch_ratio_p50']:.2f}×, "
        f"p99 {s['switch_ratio_p99']:.2f}× (steady frames / that p50: p99 {s.get('steady_ratio_p99', nan):.2f}×, "
        "the jitter with no switch)",
        f"- created after start (must be 0): {s['compiled_after_start']}",
        "",
        "## Per mask",
        "",
        "| mask | p50 | p90 | p99 | max | Σ stages p50 | dispatch p50 | dispatch % | batch-"
        f"{_first(run)['throughput']['batch']} samples/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v in run["masks"].values():
        e = v["e2e"]
        lines.append(f"| {v['label']} | {_us(e['p50'])} | {_us(e['p90'])} | {_us(e['p99'])} | {_us(e['max'])} | "
                     f"{_us(v['stage_sum']['p50'])} | {_us(v['dispatch']['p50'])} | "
                     f"{100 * v['dispatch_fraction_p50']:.1f} | {v['throughput']['samples_per_s']:.0f} |")
    seen = {st for v in run["masks"].values() for st in v["stages"]}
    stages = [st for st in run.get("stage_order", sorted(seen)) if st in seen]
    lines += ["", "Dispatch includes the timing wrappers' own Python (one per stage run; "
              f"≈ {_first(run)['timer_overhead_us']:.1f} µs per frame for the first mask above).", "",
              "## Per stage (p50 µs when it ran; blank = did not run)", "",
              "| mask | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    for v in run["masks"].values():
        cells = [_us(v["stages"][st]["p50"]) if st in v["stages"] else "" for st in stages]
        lines.append(f"| {v['label']} | " + " | ".join(cells) + " |")
    lines += ["", "## Mask switches", "",
              f"Each mask is held {run['switch']['hold']} frames: the first after a change is the switch frame, "
              "the others of the same mask in the same pattern are its steady reference. Steady ratio p99: "
              "the steady frames' own ratio to their p50, what the machine's jitter gives with no switch.", "",
              "| pattern | switches | switch p50 | switch p99 | steady p50 | ratio p50 | ratio p99 | "
              "steady ratio p99 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, p in [*run["switch"]["patterns"].items(), ("all", run["switch"]["all"])]:
        r = p["ratio_to_steady_p50"]
        jitter = p.get("steady_ratio_to_steady_p50", {}).get("p99", nan)  # profiles before it was recorded
        lines.append(f"| {name} | {p['switches']} | {_us(p['latency']['p50'])} | {_us(p['latency']['p99'])} | "
                     f"{_us(p['steady']['p50'])} | {r['p50']:.2f} | {r['p99']:.2f} | {jitter:.2f} |")
    lines += _at_rate_section(run)
    lines += _fused_section(run)
    lines += ["", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots] or [f"_{plot_note}_"]
    return lines + [""]


def _at_rate_section(run: dict[str, Any]) -> list[str]:
    """One mask called back to back and at the sensor rate: the steady table is the first."""
    r = run.get("at_rate")
    if not r:
        return []
    tight = r["tight"]["p50"]
    rows = [("back to back", r["tight"]), (f"once per tick at {r['hz']:g} Hz", r["at_rate"]),
            (f"at {r['hz']:g} Hz, prewarmed {r['prewarm_ms']:g} ms before each tick", r["prewarmed"])]
    lines = ["", f"## At the sensor rate ({r['label']})", "",
             "A robot's loop calls once per tick and leaves the core idle in between, so caches, TLB and "
             "branch predictors are cold at the next call; the tables above are back-to-back figures. "
             "Prewarmed = one untimed call shortly before each tick (the daemon's `loop.prewarm_ms`).", "",
             "| how the call is made | p50 | p99 | p50 / back-to-back p50 |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {_us(v['p50'])} | {_us(v['p99'])} | {v['p50'] / tight:.2f} |" for name, v in rows]
    return lines


def _fused_section(run: dict[str, Any]) -> list[str]:
    """Fused hot-mask engines: the latency each gains against the staged plan, the memory it
    pays, and whether the choice (``fused_choice.json``) takes it."""
    fused = run.get("fused") or {}
    if not fused:
        return []
    choice = run.get("fused_choice") or choose_fused({int(m): v for m, v in fused.items()})
    budget = "none" if choice["budget_mib"] is None else f"{choice['budget_mib']:.2f} MiB"
    lines = ["", "## Fused hot-mask engines", "",
             "Masks with a fused engine run their single frames as one call (the per-mask table above "
             "measures that path). Here both paths of the same bundle alternate frame by frame.", "",
             f"Choice: {len(choice['masks'])} mask(s), {choice['spent_mib']:.2f} MiB of budget {budget}, "
             f"mask frequencies {choice['frequencies']}; saves {choice['saved_us_per_frame']:.1f} µs per frame on "
             "average.", "",
             "| mask | experts, precision | staged p50 | fused p50 | gain µs | fused/staged | file KiB | RSS MiB | "
             "frequency | chosen |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    names = run["sensors"]
    for key, m in fused.items():
        lines.append(summary_row(int(key), m, choice["rows"][key], names))
    return lines


def _first(run: dict[str, Any]) -> dict[str, Any]:
    return next(iter(run["masks"].values()))


def _tool(entry: dict[str, Any]) -> str:
    if not entry:
        return "not recorded"
    if "skipped" in entry:
        return f"skipped ({entry['skipped']})"
    if "samples" in entry:
        return f"{len(entry['samples'])} samples"
    if "process_mib" in entry:
        return f"{entry['process_mib']} MiB"
    return str(entry.get("output", entry))[:200]


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Markdown ratio tables B / A (below 1 means B is faster or smaller)."""
    lines = [f"# B / A — A: {a['engines']} ({a['label']}, {a['created']}); B: {b['engines']} ({b['label']}, {b['created']})",
             "", f"A on {a['environment']['cpu_model']}; B on {b['environment']['cpu_model']}", "",
             "| mask | A p50 | B p50 | p50 B/A | A p99 | B p99 | p99 B/A | dispatch % A | dispatch % B | samples/s B/A |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, va in a["masks"].items():
        vb = b["masks"].get(key)
        if vb is None:
            continue
        ea, eb = va["e2e"], vb["e2e"]
        lines.append(
            f"| {va['label']} | {_us(ea['p50'])} | {_us(eb['p50'])} | {eb['p50'] / ea['p50']:.2f} | {_us(ea['p99'])} | "
            f"{_us(eb['p99'])} | {eb['p99'] / ea['p99']:.2f} | {100 * va['dispatch_fraction_p50']:.1f} | "
            f"{100 * vb['dispatch_fraction_p50']:.1f} | "
            f"{vb['throughput']['samples_per_s'] / va['throughput']['samples_per_s']:.2f} |")
    rows = [("cold start s", a["cold_start"]["total_s"], b["cold_start"]["total_s"]),
            ("RSS load delta MiB", a["memory"]["rss_load_delta_mib"], b["memory"]["rss_load_delta_mib"]),
            ("switch ratio p50", a["summary"]["switch_ratio_p50"], b["summary"]["switch_ratio_p50"]),
            ("switch ratio p99", a["summary"]["switch_ratio_p99"], b["summary"]["switch_ratio_p99"])]
    lines += ["", "| quantity | A | B | B/A |", "|---|---:|---:|---:|"]
    for name, x, y in rows:
        lines.append(f"| {name} | {x:.3f} | {y:.3f} | {y / x:.2f} |" if x else f"| {name} | {x:.3f} | {y:.3f} | – |")
    return "\n".join(lines) + "\n"
