"""The benchmark's outputs: a Markdown table (method x setting, mean +- std over seeds), per-mask
tables with routing entropy and expert usage, and a PNG of accuracy per mask per method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgemoe.bench.accuracy import DEDICATED, METRICS, BenchResult
from edgemoe.core.mask import all_masks, mask_label


def _ms(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{100 * np.nanmean(v):.1f} ± {100 * np.nanstd(v):.1f}"


def markdown(result: BenchResult, title: str, note: str = "") -> str:
    cfg, s = result.config, result.settings
    names = cfg.sensor_names
    epochs = s.epochs or cfg.training.epochs
    selection = f"selected on validation from epoch {s.select_from(epochs)}"
    lines = [f"# {title}", "", note, "",
             (f"Methods {', '.join(s.methods)}; seeds {list(s.seeds)}; rates {list(s.rates)}; "
              f"epochs {epochs} ({selection}); training samples capped at {s.train_limit or 'none'}; "
              f"{s.jobs} parallel job(s); run time {result.seconds / 60:.1f} min. "
              "Values: mean ± std over seeds, in %."), ""]
    settings = list(next(iter(result.scores.values())))
    lines += ["## Method × setting (accuracy / macro-F1 / AUROC)", "",
              "| method | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for method, by_setting in result.scores.items():
        cells = [" / ".join(_ms([v[k] for v in by_setting[st].values()]) for k in METRICS) for st in settings]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "## All masks: mean and worst-mask accuracy", "", "| method | mean | worst mask |", "|---|---|---|"]
    for method, by_setting in result.scores.items():
        seeds = by_setting["all masks"].values()
        lines.append(f"| {method} | {_ms([v['accuracy'] for v in seeds])} | {_ms([v['worst'] for v in seeds])} |")
    lines += ["", "## Accuracy per mask", "",
              "| mask | " + " | ".join(result.masks) + " |", "|---" * (len(result.masks) + 1) + "|"]
    for c in all_masks(cfg.num_sensors):
        cells = [_ms([per[c]["accuracy"] for per in result.masks[m].values()]) for m in result.masks]
        lines.append(f"| {mask_label(c, names)} | " + " | ".join(cells) + " |")
    lines += ["", "## Routing per mask: entropy (nats) / max expert share / unused experts (seed-mean)", "",
              (f"N = {cfg.model.num_experts} experts, top-{cfg.model.top_k}; collapse bar: max share ≤ 2/N = "
               f"{2 / cfg.model.num_experts:.2f} and 0 unused."), ""]
    routed = [m for m in result.masks if "max_share" in next(iter(result.masks[m].values()))[1]]
    lines += ["| mask | " + " | ".join(routed) + " |", "|---" * (len(routed) + 1) + "|"]
    for c in all_masks(cfg.num_sensors):
        cells = []
        for m in routed:
            rows = [per[c] for per in result.masks[m].values()]
            cells.append(" / ".join(f"{np.mean([r[k] for r in rows]):.2f}" for k in ("entropy", "max_share", "unused")))
        lines.append(f"| {mask_label(c, names)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(result: BenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    masks = all_masks(result.config.num_sensors)
    labels = [mask_label(c, result.config.sensor_names) for c in masks]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(result.masks)
    for j, (method, per_seed) in enumerate(result.masks.items()):
        acc = [np.mean([per[c]["accuracy"] for per in per_seed.values()]) for c in masks]
        ax.bar(np.arange(len(masks)) + j * width, acc, width, label=method,
               hatch="//" if method == DEDICATED else None)
    ax.set_xticks(np.arange(len(masks)) + 0.4 - width / 2, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=len(result.masks))
    ax.set_title("accuracy per sensor mask per method (mean over seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_outputs(result: BenchResult, out_dir: Path, stem: str, title: str, note: str = "") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png, raw = out_dir / f"{stem}.md", out_dir / f"{stem}.png", out_dir / f"{stem}.json"
    md.write_text(markdown(result, title, note) + f"\n![accuracy per mask]({png.name})\n")
    plot(result, png)
    raw.write_text(json.dumps({"scores": result.scores, "masks": result.masks, "seconds": result.seconds},
                              indent=1, default=str))
    return [md, png, raw]
