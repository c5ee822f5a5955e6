"""Argument wiring shared by ``edgemoe profile`` and ``scripts/profile_latency.py``.

Two forms: ``profile ENGINES [ENGINES ...] --out DIR`` measures engine bundles (one run each,
e.g. an fp32 and an int8 build), ``profile compare A B`` prints B/A ratio tables of two profiles.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.core.mask import parse_mask

COMPARE = "compare"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="ENGINES",
                        help="engine bundle(s) to profile; or 'compare A B' with two profile dirs/JSONs")
    parser.add_argument("--out", type=Path, help="report directory (profile.json, profile.md, *.png)")
    parser.add_argument("--mask", action="append", default=None,
                        help="profile only these masks, e.g. camera+imu (repeatable; default every mask)")
    parser.add_argument("--frames", type=int, default=300, help="measured frames per mask")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the masks")
    parser.add_argument("--switch-frames", type=int, default=100, help="frames per mask-switch pattern")
    parser.add_argument("--rate-hz", type=float, default=20.0,
                        help="sensor rate of the at-rate measurement (the daemon's loop.rate_hz)")
    parser.add_argument("--rate-frames", type=int, default=40,
                        help="frames per at-rate variant: back to back, at the rate, prewarmed (0 = skip)")
    parser.add_argument("--data", type=Path, default=None, help="dataset dir: profile on real test frames")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--frequencies", type=Path, default=None,
                        help="how often each mask occurs, to choose fused hot masks: JSON {mask: count} or the "
                             "daemon's /metrics text (default: all masks equally often)")
    parser.add_argument("--fused-budget-mib", type=float, default=None,
                        help="memory the fused hot-mask engines may take (default: no limit)")
    parser.add_argument("--compare-out", type=Path, default=None, help="compare: also write the table here")


def main(args: argparse.Namespace) -> int:
    if str(args.paths[0]) == COMPARE:
        return _compare(args)
    return _profile(args)


def _profile(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.progress import Progress

    from edgemoe.core.bundle import read_engine_manifest
    from edgemoe.core.errors import ConfigError
    from edgemoe.core.mask import all_masks
    from edgemoe.profile.measure import ProfileSettings, profile_engines, switch_patterns, work_units
    from edgemoe.profile.report import write_reports

    if args.out is None:
        raise ConfigError("profile: --out DIR is required (where profile.json/.md and plots go)")
    runs = []
    with Progress(disable=args.no_progress, transient=False) as bar:
        for path in args.paths:
            names = read_engine_manifest(path).config.sensor_names
            masks = tuple(parse_mask(m, names) for m in args.mask) if args.mask else None
            settings = ProfileSettings(masks=masks, frames=args.frames, rounds=args.rounds,
                                       switch_frames=args.switch_frames, data=args.data, seed=args.seed,
                                       rate_hz=args.rate_hz, rate_frames=args.rate_frames)
            chosen = list(masks or all_masks(len(names)))
            patterns = len(switch_patterns(chosen, len(names), np.random.default_rng(0), 2))
            task = bar.add_task(f"profile {path}", total=work_units(len(chosen), settings, patterns))
            runs.append(profile_engines(path, settings, lambda what: bar.update(task, advance=1, description=what)))
    files = _choose_fused(runs, args)
    files += write_reports(runs, args.out)
    for run in runs:
        s = run["summary"]
        print(f"{run['engines']} ({run['label']}): p50 {s['e2e_p50_us']['min']:.0f}-{s['e2e_p50_us']['max']:.0f} µs, "
              f"dispatch ≤ {100 * s['dispatch_fraction_p50_max']:.0f}% of a frame, switch p50 "
              f"{s['switch_ratio_p50']:.2f}× steady, cold start {s['cold_start_s']:.2f} s")
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


def _choose_fused(runs: list[dict], args: argparse.Namespace) -> list[Path]:  # type: ignore[type-arg]
    """Attach the fused-engine choice to each run; write the first bundle's as the choice file."""
    from edgemoe.profile.fused import choose_fused, read_frequencies, write_choice

    written: list[Path] = []
    for run in runs:
        if not run.get("fused"):
            continue
        freq = read_frequencies(args.frequencies, run["sensors"]) if args.frequencies else None
        run["fused_choice"] = choose_fused({int(m): v for m, v in run["fused"].items()}, freq, args.fused_budget_mib)
        if not written:
            args.out.mkdir(parents=True, exist_ok=True)
            written.append(write_choice(run["fused_choice"], args.out, run["sensors"]))
            print(f"fused hot masks worth their memory: {run['fused_choice']['masks']} -> {written[0]}")
    return written


def _compare(args: argparse.Namespace) -> int:
    from edgemoe.core.errors import ConfigError
    from edgemoe.profile.report import compare, load_runs

    if len(args.paths) != 3:
        raise ConfigError("usage: profile compare A B (two profile directories or profile.json files)")
    a, b = load_runs(args.paths[1]), load_runs(args.paths[2])
    text = "\n".join(compare(ra, rb) for ra, rb in zip(a, b))
    print(text)
    if args.compare_out:
        args.compare_out.write_text(text)
    return 0
