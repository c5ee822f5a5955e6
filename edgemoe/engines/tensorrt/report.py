"""The build report: per stage precision, build time, engine size, scratch and DLA placement.

Read from an engine bundle's manifest, so it can be written (and tested) anywhere; the on-device
build script prints it next to the JetPack/TensorRT/CUDA versions and the power mode.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgemoe.core.bundle import read_engine_manifest


def dla_summary(entry: Mapping[str, Any]) -> str:
    """Where one engine runs, in a few words: ``-`` (no DLA asked), why it stayed on the GPU, or the
    layer counts on the DLA and the GPU and the layers that fell back."""
    dla = entry.get("dla")
    if not dla:
        return "-"
    if dla.get("skipped"):
        return f"GPU ({dla['skipped']})"
    fell = dla.get("fell_back_to_gpu") or []
    text = f"{len(dla.get('dla_layers', []))} on DLA, {dla.get('gpu_layers', 0)} on GPU"
    if dla.get("unplaced"):
        text += f", {len(dla['unplaced'])} not placed by the inspector"
    return text + (f"; fell back: {', '.join(fell[:5])}{' …' if len(fell) > 5 else ''}" if fell else "")


def build_report(manifest: Mapping[str, Any]) -> str:
    env = manifest.get("environment", {})
    lines = [
        f"# Engine build: target '{manifest.get('target', {}).get('name', '?')}' ({manifest.get('backend')})",
        "",
        f"GPU {env.get('gpu', '?')} (SM {env.get('compute_capability', '?')}), TensorRT {env.get('tensorrt', '?')}, "
        f"CUDA {env.get('cuda_runtime', '?')}, JetPack {env.get('jetpack') or '-'} (L4T {env.get('l4t') or '-'}); "
        f"built {manifest.get('created', '?')}",
        "",
        "| stage | precision | typed | static | build s | engine MiB | scratch MiB | DLA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total_build = 0.0
    scratch = []
    for stage, entry in manifest.get("engines", {}).items():
        seconds = float(entry.get("build_seconds", 0.0))
        total_build += seconds
        scratch.append(int(entry.get("device_memory_size", 0)))
        typed = "strong" if entry.get("strongly_typed") else "+".join(entry.get("builder_flags", [])) or "-"
        lines.append(f"| {stage} | {entry.get('precision')} | {typed} | {'yes' if entry.get('static') else 'no'} "
                     f"| {seconds:.1f} | {entry.get('engine_bytes', 0) / 2**20:.2f} "
                     f"| {entry.get('device_memory_size', 0) / 2**20:.2f} | {dla_summary(entry)} |")
    lines += ["", f"Total build time {total_build:.1f} s. Scratch memory: largest engine "
              f"{max(scratch, default=0) / 2**20:.2f} MiB (shared), sum {sum(scratch) / 2**20:.2f} MiB."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """``python -m edgemoe.engines.tensorrt.report ENGINES [REPORT.md]``"""
    text = build_report(read_engine_manifest(Path(argv[1])).model_dump(mode="json"))
    if len(argv) > 2:
        Path(argv[2]).write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
