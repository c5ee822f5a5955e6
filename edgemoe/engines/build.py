"""``edgemoe build``: a model bundle -> an engine bundle for one target, built on that target.

Each stage is built from the ONNX variant its precision policy picks (``auto`` = the manifest's
per-stage choice). The engine manifest records the target, the backend's environment, and per
engine the source sha256, precision and engine sha256, so loading can refuse a tampered or foreign
engine with a message naming both sides.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgemoe.core.bundle import (
    ENGINE_FORMAT, MODEL_FORMAT, config_of, layout_of, read_manifest, sha256_file, staged_directory,
    verify_file, write_manifest,
)
from edgemoe.core.engine import TensorSpec
from edgemoe.core.errors import BundleError
from edgemoe.core.stages import FUSED_DIMS, stage_file_stem
from edgemoe.engines.backend import get_backend
from edgemoe.engines.target import TargetProfile

REBUILD = "re-export with 'edgemoe export CKPT --out BUNDLE'"


def fused_masks(available: dict[str, Any], wanted: Sequence[int] | None, bundle: Path) -> list[str]:
    """Manifest keys of the fused graphs to build; a wanted mask the bundle lacks is an error."""
    if wanted is None:
        return sorted(available, key=int)
    lacking = sorted({m for m in wanted if str(m) not in available})
    if lacking:
        raise BundleError(f"{bundle}: no fused graph for mask(s) {lacking} (the bundle has "
                          f"{sorted(map(int, available))}); re-export with 'edgemoe export CKPT --fuse MASK'")
    return sorted({str(m) for m in wanted}, key=int)


def choose_precision(stage: str, entry: dict[str, Any], policy: str) -> str:
    """``auto`` follows the manifest's per-stage choice; a forced precision must exist."""
    precision = entry.get("precision", {}).get("choice", "fp32") if policy == "auto" else policy
    if precision not in entry["variants"]:
        raise BundleError(f"stage '{stage}': no {precision} variant in the bundle (has "
                          f"{sorted(entry['variants'])}); run 'edgemoe calibrate' first or pick another precision")
    return precision


def build_engines(bundle: Path, target: TargetProfile, out: Path, force: bool = False,
                  on_stage: Callable[[str, str], None] = lambda stage, precision: None,
                  fuse: Sequence[int] | None = None) -> dict[str, Any]:
    """Build every stage, and the fused graph of each mask in ``fuse`` (None: every fused graph
    the bundle carries; the profiler's choice file narrows it to the masks worth their memory)."""
    model = read_manifest(bundle, MODEL_FORMAT)
    config = config_of(model, str(bundle))
    layout = layout_of(model)
    backend = get_backend(target.backend)
    max_dims = layout.max_dims(target.max_batch)
    with staged_directory(out, overwrite=force) as tmp:
        def build(stage: str, entry: dict[str, Any], precision: str, dims: dict[str, int]) -> dict[str, Any]:
            variant = entry["variants"][precision]
            source = verify_file(bundle, variant, f"stage '{stage}' ({precision})", REBUILD)
            on_stage(stage, precision)
            inputs = tuple(TensorSpec.from_dict(s) for s in entry["inputs"])
            outputs = tuple(TensorSpec.from_dict(s) for s in entry["outputs"])
            rel = f"{stage_file_stem(stage)}.{precision}{backend.engine_suffix}"
            extra = backend.build_stage(stage, source, precision, inputs, outputs, dims, target, tmp / rel)
            return {
                "file": rel, "sha256": sha256_file(tmp / rel), "precision": precision,
                "source_file": variant["file"], "source_sha256": variant["sha256"],
                "calibration": variant.get("calibration"), "source_opset": model.get("opset"),
                "inputs": entry["inputs"], "outputs": entry["outputs"], **extra,
            }

        engines: dict[str, Any] = {}
        for stage in layout.stage_names():
            if stage not in model["stages"]:
                raise BundleError(f"{bundle}: stage '{stage}' is missing from the manifest; {REBUILD}")
            entry = model["stages"][stage]
            engines[stage] = build(stage, entry, choose_precision(stage, entry, target.precision), max_dims)
        fused = {}
        for key in fused_masks(model.get("fused") or {}, fuse, bundle):
            entry = model["fused"][key]
            # a fused graph is fp32 (no calibrated variant): its engine's speed comes from one call
            fused[key] = {"stage": entry["stage"], "sensors": entry["sensors"],
                          **build(entry["stage"], entry, "fp32", FUSED_DIMS)}
        constants = model.get("constants")
        if constants:
            shutil.copyfile(verify_file(bundle, constants, "constants", REBUILD), tmp / constants["file"])
        manifest = {
            "format": ENGINE_FORMAT,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "target": target.model_dump(mode="json"),
            "backend": target.backend,
            "environment": backend.environment(target),
            "source_bundle": {"path": str(Path(bundle).resolve()),
                              "manifest_sha256": sha256_file(Path(bundle) / "manifest.json")},
            "config": config.model_dump(mode="json"),
            "layout": layout.to_dict(),
            "max_dims": max_dims,
            "constants": constants,
            "expected_accuracy": model.get("expected_accuracy"),
            "engines": engines,
            "fused": fused,
        }
        write_manifest(tmp, manifest)
    return manifest
