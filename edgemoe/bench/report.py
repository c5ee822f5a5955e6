"""The benchmark's outputs: Markdown tables, a PNG of accuracy per mask per method, raw JSON.

Per method (mean over seeds): mean and worst accuracy over masks, the mean by number of sensors
present, the headroom closed ((method - smoe) / (dedicated - smoe)), the calibration error of the
``expected_accuracy`` a bundle of it would carry, and the largest expert share on any mask
(flagged above 2/N); then accuracy and expert load per mask. A suite adds, per regime, the
headroom and the Bayes ceiling, and says which regimes rank the methods.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgemoe.bench.accuracy import DEDICATED, METRICS, BenchResult
from edgemoe.bench.suite import (
    BASELINE,
    CLOSED_BAR,
    GAIN_BAR,
    MIN_HEADROOM,
    RegimeResult,
    SuiteResult,
    best_method,
    best_overall,
    headroom,
    headroom_closed,
    mean_over_masks,
    seed_mean,
)
from edgemoe.core.mask import all_masks, mask_label

FLAG = " ⚠"


def machine() -> str:
    """What the run ran on, for titles: CPU model and the cores this process may use."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def _ms(values: Sequence[float]) -> str:
    v = np.asarray(values, float)
    return f"{100 * np.nanmean(v):.1f} ± {100 * np.nanstd(v):.1f}"


def _pct(value: float | np.floating) -> str:
    return "–" if not np.isfinite(value) else f"{100 * value:.1f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(cells: Sequence[str]) -> list[str]:
    return [_row(cells), "|---" * len(cells) + "|"]


def settings_line(result: BenchResult) -> str:
    cfg, s = result.config, result.settings
    epochs = s.epochs or cfg.training.epochs
    return (f"Methods {', '.join(s.methods)}; seeds {list(s.seeds)}; rates {list(s.rates) or 'none'}; "
            f"epochs {epochs} (selected on validation from epoch {s.select_from(epochs)}); training samples "
            f"capped at {s.train_limit or 'none'}; {s.jobs} parallel job(s); run time {result.seconds / 60:.1f} min. "
            "Values: mean (± std) over seeds, in %.")


def method_table(result: BenchResult, capped: Sequence[int] = (), ceiling: dict[int, float] | None = None) -> list[str]:
    """One row per method: the numbers that rank it (and its distance to the Bayes ceiling, the
    yardstick where dedicated models are no upper reference, e.g. under skewed availability)."""
    m, n_exp = result.config.num_sensors, result.config.model.num_experts
    masks = all_masks(m)
    uncapped = [c for c in masks if c not in capped]
    sizes = range(1, m + 1)
    cols = ["method", "mean", "worst mask"] + [f"{k} sensor{'s' * (k > 1)}" for k in sizes]
    cols += ["uncapped masks", "capped masks"] if capped else []
    cols += ["below Bayes ceiling"] if ceiling else []
    cols += ["headroom closed", "calibration error", f"max expert share (cap 2/N = {2 / n_exp:.2f})"]
    lines = _header(cols)
    for method, by_setting in result.scores.items():
        acc = seed_mean(result, method)
        seeds = by_setting["all masks"].values()
        cells = [method, _ms([v["accuracy"] for v in seeds]), _ms([v["worst"] for v in seeds])]
        cells += [_pct(np.mean([acc[c] for c in masks if bin(c).count("1") == k])) for k in sizes]
        if capped:
            cells += [_pct(np.mean([acc[c] for c in uncapped])), _pct(np.mean([acc[c] for c in capped]))]
        if ceiling:
            cells.append(_pct(np.mean([ceiling[c] - acc[c] for c in masks])))
        closed = headroom_closed(result, method)
        cells.append("–" if not np.isfinite(closed) else f"{100 * closed:.0f}%")
        cells.append(_ms([v.get("calibration_error", np.nan) for v in seeds]))
        cells.append(_max_share(result, method, n_exp))
        lines.append(_row(cells))
    return lines


def _max_share(result: BenchResult, method: str, num_experts: int) -> str:
    first = next(iter(result.masks[method].values()))
    if "max_share" not in next(iter(first.values())):
        return "–"
    worst = max(seed_mean(result, method, "max_share").values())
    return f"{worst:.2f}" + (FLAG if worst > 2 / num_experts else "")


def mask_tables(result: BenchResult, ceiling: dict[int, float] | None = None, capped: Sequence[int] = ()) -> list[str]:
    """Accuracy per mask (with the Bayes ceiling where known) and expert load per mask."""
    cfg = result.config
    names, methods = cfg.sensor_names, list(result.masks)
    lines = ["### Accuracy per mask", "",
             *_header(["mask"] + methods + (["Bayes ceiling"] if ceiling else []))]
    for c in all_masks(cfg.num_sensors):
        cells = [mask_label(c, names) + (" (capped)" if c in capped else "")]
        cells += [_ms([per[c]["accuracy"] for per in result.masks[m].values()]) for m in methods]
        cells += [_pct(ceiling[c])] if ceiling else []
        lines.append(_row(cells))
    routed = [m for m in methods if "max_share" in next(iter(next(iter(result.masks[m].values())).values()))]
    if not routed:
        return lines
    n = cfg.model.num_experts
    lines += ["", "### Expert load per mask: max expert share / routing entropy (nats) / unused experts", "",
              (f"N = {n} experts, top-{cfg.model.top_k}; share of routed (token, slot) assignments, mean over "
               f"seeds; {FLAG.strip()} marks a share above 2/N = {2 / n:.2f}."
               + (" With top-k = 2 of 4 an expert takes at most 1/k = 0.50, so only unused experts can show "
                  "collapse on this config." if cfg.model.top_k * 2 == n else "")), "",
              *_header(["mask"] + routed)]
    for c in all_masks(cfg.num_sensors):
        cells = [mask_label(c, names)]
        for m in routed:
            share, entropy, unused = (seed_mean(result, m, k)[c] for k in ("max_share", "entropy", "unused"))
            cells.append(f"{share:.2f}{FLAG if share > 2 / n else ''} / {entropy:.2f} / {unused:.0f}")
        lines.append(_row(cells))
    return lines


def settings_table(result: BenchResult) -> list[str]:
    """Method x setting (accuracy / macro-F1 / AUROC), when rates were run."""
    settings = list(next(iter(result.scores.values())))
    lines = ["### Method × setting (accuracy / macro-F1 / AUROC)", "", *_header(["method"] + settings)]
    for method, by_setting in result.scores.items():
        cells = [" / ".join(_ms([v[k] for v in by_setting[st].values()]) for k in METRICS) for st in settings]
        lines.append(_row([method, *cells]))
    return lines


def bench_section(result: BenchResult, ceiling: dict[int, float] | None = None, capped: Sequence[int] = (),
                  png: str | None = None) -> list[str]:
    lines = [settings_line(result), "", *method_table(result, capped, ceiling), ""]
    if capped:
        lines += [f"Capped masks (by construction): {', '.join(mask_label(c, result.config.sensor_names) for c in capped)}.", ""]
    lines += mask_tables(result, ceiling, capped) + [""]
    if result.settings.rates:
        lines += settings_table(result) + [""]
    if png:
        lines += [f"![accuracy per mask]({png})", ""]
    return lines


def markdown(result: BenchResult, title: str, note: str = "", png: str | None = None) -> str:
    room = headroom(result)
    lines = [f"# {title}", "", note, "", f"Headroom (dedicated − smoe, mean over masks): {_pct(room)} pts.", ""]
    return "\n".join(lines + bench_section(result, png=png)) + "\n"


def suite_markdown(suite: SuiteResult, title: str, note: str = "", pngs: dict[str, str] | None = None) -> str:
    jobs = suite.regimes[0].bench.settings.jobs if suite.regimes else 1
    load = ", ".join(f"{v:.1f}" for v in suite.load)
    lines = [f"# {title}", "", note, "",
             (f"Machine: {machine()}; 1-min load average at each regime's start and at the end: {load}. "
              f"Suite wall time {suite.seconds / 60:.1f} min; the tasks' CPU time {suite.cpu_seconds / 60:.1f} min, "
              f"i.e. about {suite.cpu_seconds / 60 / jobs:.1f} min on {jobs} idle cores ({jobs} jobs)."), "",
             "## Regimes", "",
             *_header(["regime", "what fails", "headroom (pts)", "ranks methods", "Bayes ceiling (mean)",
                       "dedicated (mean)", "smoe (mean)"])]
    for r in suite.regimes:
        ceiling = "–" if r.ceiling is None else _pct(float(np.mean(list(r.ceiling.values()))))
        lines.append(_row([r.regime.name, r.regime.summary, _pct(r.headroom),
                           "yes" if r.ranks_methods else f"no (< {100 * MIN_HEADROOM:.0f})",
                           ceiling, _mean_of(r, DEDICATED), _mean_of(r, "smoe")]))
    lines += ["", *bars_section(suite)]
    for r in suite.regimes:
        lines += ["", f"## Regime `{r.regime.name}`", "", r.regime.summary + ".", ""]
        if not r.ranks_methods:
            lines += [f"Headroom {_pct(r.headroom)} pts < {100 * MIN_HEADROOM:.0f}: not used to rank methods.", ""]
        lines += bench_section(r.bench, r.ceiling, r.capped, (pngs or {}).get(r.regime.name))
    return "\n".join(lines) + "\n"


def bars_section(suite: SuiteResult) -> list[str]:
    """Per regime that ranks methods: the best single model against zero-fill smoe and the bars
    (gain >= GAIN_BAR, headroom closed >= CLOSED_BAR), with the few-sensor masks apart."""
    lines = ["## Against the bars", "",
             (f"Best single-model method per regime that ranks methods, against zero-fill `{BASELINE}` "
              f"(mean over masks and seeds). Bars: +{100 * GAIN_BAR:.0f} pts and {100 * CLOSED_BAR:.0f}% of "
              "the headroom closed. `+fusion`: the cross-sensor fusion stage (sensor messages, then "
              "attention); `+nomessages`: that stage without the messages; `+probes`: a probe per sensor "
              "on its own encoder tokens (training only); `+solo`: every present sensor also "
              "trained alone through the whole model (training only); `+uniform`: every sensor "
              "combination trained equally often; `permask`: one dedicated model per mask (the upper "
              "reference)."), "",
             *_header(["regime (headroom)", "best method", f"gain over {BASELINE}", "headroom closed",
                       f"1 sensor (best vs {BASELINE})", f"2 sensors (best vs {BASELINE})", "met"])]
    ranked = [r for r in suite.regimes if r.ranks_methods]
    for r in ranked:
        best = best_method(r.bench)
        if best is None:
            continue
        gain, closed = _against_baseline(r.bench, best)
        few = [f"{_pct(mean_over_masks(r.bench, best, k))} vs {_pct(mean_over_masks(r.bench, BASELINE, k))}"
               for k in (1, 2)]
        lines.append(_row([f"{r.regime.name} ({_pct(r.headroom)})", best, f"{100 * gain:+.1f}",
                           f"{100 * closed:.0f}%", *few, "yes" if _meets(gain, closed) else "no"]))
    if not ranked:
        lines.append(_row(["no regime ranks methods", *["–"] * 6]))
    if len(ranked) > 1:
        lines += ["", *_one_method_line(ranked)]
    return lines


def _against_baseline(result: BenchResult, method: str) -> tuple[float, float]:
    """The method's gain over zero-fill smoe (mean over masks and seeds) and headroom closed."""
    return mean_over_masks(result, method) - mean_over_masks(result, BASELINE), headroom_closed(result, method)


def _meets(gain: float, closed: float) -> bool:
    return gain >= GAIN_BAR and closed >= CLOSED_BAR


def _one_method_line(ranked: list[RegimeResult]) -> list[str]:
    """Whether one configuration meets the bars on every ranking regime at once."""
    method = best_overall([r.bench for r in ranked])
    if method is None:
        return ["One method for every regime: no single-model method ran on all of them."]
    parts, met = [], True
    for r in ranked:
        gain, closed = _against_baseline(r.bench, method)
        met = met and _meets(gain, closed)
        parts.append(f"{r.regime.name} {100 * gain:+.1f} / {100 * closed:.0f}%")
    line = (f"One method for every regime (the best worst-case headroom closed): `{method}` — "
            f"{', '.join(parts)}: {'met' if met else 'not met'} on all of them.")
    return [line]


def _mean_of(r: RegimeResult, method: str) -> str:
    if method not in r.bench.masks:
        return "–"
    return _pct(float(np.mean(list(seed_mean(r.bench, method).values()))))


def plot(result: BenchResult, path: Path, title: str, ceiling: dict[int, float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    masks = all_masks(result.config.num_sensors)
    labels = [mask_label(c, result.config.sensor_names) for c in masks]
    x = np.arange(len(masks))
    fig, ax = plt.subplots(figsize=(15, 5.5))
    width = 0.8 / len(result.masks)
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours: no two methods share one
    for j, method in enumerate(result.masks):
        acc = seed_mean(result, method)
        ax.bar(x + j * width, [acc[c] for c in masks], width, label=method, color=colours[j % len(colours)],
               hatch="//" if method == DEDICATED else None)
    if ceiling:
        ax.scatter(x + 0.4 - width / 2, [ceiling[c] for c in masks], marker="_", s=900, color="black",
                   linewidths=2, label="Bayes ceiling", zorder=3)
    ax.set_xticks(x + 0.4 - width / 2, labels, rotation=40, ha="right", fontsize=11)
    ax.set_ylabel("test accuracy (mean over seeds)", fontsize=12)
    ax.set_ylim(0, 1.02)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.grid(axis="y", alpha=0.3)
    # beside the axes, one entry per line: a dozen method names never fit above the bars
    ax.legend(fontsize=10, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(title, fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _raw(result: BenchResult) -> dict[str, object]:
    return {"scores": result.scores, "masks": result.masks, "seconds": result.seconds, "cpu_seconds": result.cpu_seconds}


def write_outputs(result: BenchResult, out_dir: Path, stem: str, title: str, note: str = "") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png, raw = out_dir / f"{stem}.md", out_dir / f"{stem}.png", out_dir / f"{stem}.json"
    md.write_text(markdown(result, title, note, png.name))
    plot(result, png, f"{title}: accuracy per sensor mask per method ({machine()})")
    raw.write_text(json.dumps(_raw(result), indent=1, default=str))
    return [md, png, raw]


def write_suite_outputs(suite: SuiteResult, out_dir: Path, stem: str, title: str, note: str = "") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, pngs = [], {}
    for r in suite.regimes:
        png = out_dir / f"{stem}_{r.regime.name}.png"
        plot(r.bench, png, f"regime {r.regime.name}: accuracy per sensor mask per method ({machine()})", r.ceiling)
        pngs[r.regime.name] = png.name
        paths.append(png)
    md, raw = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md.write_text(suite_markdown(suite, title, note, pngs))
    raw.write_text(json.dumps({"seconds": suite.seconds, "load": suite.load, "regimes": {
        r.regime.name: {"headroom": r.headroom, "ceiling": r.ceiling, "capped": r.capped, **_raw(r.bench)}
        for r in suite.regimes}}, indent=1, default=str))
    return [md, raw, *paths]
