"""``edgemoe build``: a model bundle -> an engine bundle for one target, built on that target.

Each stage is built from the ONNX variant its precision policy picks (``auto`` = the manifest's
per-stage choice). The engine manifest records the target, the backend's environment, and per
engine the source sha256, precision and engine sha256, so loading can refuse a tampered or foreign
engine with a message naming both sides.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgemoe.core.bundle import read_model_manifest, sha256_file, staged_directory, verify_file, write_manifest
from edgemoe.core.errors import BundleError
from edgemoe.core.manifest import (
    KINDS, MANIFEST, MODEL_KIND, EngineEntry, EngineManifest, FusedEngineEntry, FusedEntry, ModelManifest, SourceBundle, StageEntry,
)
from edgemoe.core.signing import TrustedKey
from edgemoe.core.stages import FUSED_DIMS, stage_file_stem
from edgemoe.engines.backend import Backend, get_backend
from edgemoe.engines.target import TargetProfile

REBUILD = KINDS[MODEL_KIND][2]


def fused_masks(available: Mapping[int, FusedEntry], wanted: Sequence[int] | None, bundle: Path) -> list[int]:
    """Masks of the fused graphs to build; a wanted mask the bundle lacks is an error."""
    if wanted is None:
        return sorted(available)
    lacking = sorted({m for m in wanted if m not in available})
    if lacking:
        raise BundleError(f"{bundle}: no fused graph for mask(s) {lacking} (the bundle has "
                          f"{sorted(available)}); re-export with 'edgemoe export CKPT --fuse MASK'")
    return sorted(set(wanted))


def choose_precision(stage: str, entry: StageEntry, policy: str, backend: Backend) -> str:
    """``auto`` follows the manifest's per-stage choice; a forced precision must exist and be one
    the backend builds."""
    precision = entry.precision.choice if policy == "auto" else policy
    if precision not in backend.precisions:
        raise BundleError(f"stage '{stage}': the {backend.name} backend does not build {precision} graphs (it builds "
                          f"{list(backend.precisions)}); pick another precision")
    if precision not in entry.variants:
        raise BundleError(f"stage '{stage}': no {precision} variant in the bundle (has "
                          f"{sorted(entry.variants)}); run 'edgemoe calibrate' first or pick another precision")
    return precision


def build_engines(bundle: Path, target: TargetProfile, out: Path, force: bool = False,
                  on_stage: Callable[[str, str], None] = lambda stage, precision: None,
                  fuse: Sequence[int] | None = None, trust: TrustedKey | None = None) -> EngineManifest:
    """Build every stage, and the fused graph of each mask in ``fuse`` (None: every fused graph
    the bundle carries; the profiler's choice file narrows it to the masks worth their memory).
    With ``trust``, a model bundle that key did not sign is refused before anything is built."""
    bundle = Path(bundle).resolve()
    model = read_model_manifest(bundle, trust)
    backend = get_backend(target.backend)
    max_dims = model.layout.max_dims(target.max_batch)
    masks = fused_masks(model.fused, fuse, bundle)
    _check_fused_forms(model, masks, backend)
    precisions = {stage: choose_precision(stage, model.stages[stage], target.precision, backend)
                  for stage in model.layout.stage_names() if stage in model.stages}
    precisions.update({model.fused[m].stage: choose_precision(model.fused[m].stage, model.fused[m], target.precision,
                                                              backend) for m in masks})
    with staged_directory(out, overwrite=force) as tmp:
        def build(stage: str, entry: StageEntry, precision: str, dims: dict[str, int]) -> dict[str, Any]:
            variant = entry.variants[precision]
            source = verify_file(bundle, variant, f"stage '{stage}' ({precision})", REBUILD)
            on_stage(stage, precision)
            rel = f"{stage_file_stem(stage)}.{precision}{backend.engine_suffix}"
            extra = backend.build_stage(stage, source, precision, entry.inputs, entry.outputs, dims, target, tmp / rel)
            return {
                "file": rel, "sha256": sha256_file(tmp / rel), "precision": precision,
                "source_file": variant.file, "source_sha256": variant.sha256,
                "calibration": variant.calibration, "source_opset": model.opset,
                "inputs": entry.inputs, "outputs": entry.outputs, **extra,
            }

        engines: dict[str, EngineEntry] = {}
        for stage in model.layout.stage_names():
            if stage not in model.stages:
                raise BundleError(f"{bundle}: stage '{stage}' is missing from the manifest; {REBUILD}")
            entry = model.stages[stage]
            engines[stage] = EngineEntry(**build(stage, entry, precisions[stage], max_dims))
        fused = {}
        for mask in masks:
            entry = model.fused[mask]
            fused[mask] = FusedEngineEntry(stage=entry.stage, sensors=entry.sensors, experts=entry.experts,
                                           **build(entry.stage, entry, precisions[entry.stage], FUSED_DIMS))
        if model.constants is not None:
            shutil.copyfile(verify_file(bundle, model.constants, "constants", REBUILD), tmp / model.constants.file)
        manifest = EngineManifest(
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            target=target.model_dump(mode="json"),
            backend=target.backend,
            environment=backend.environment(target),
            source_bundle=_source(bundle, model, trust),
            config=model.config,
            layout=model.layout,
            max_dims=max_dims,
            constants=model.constants,
            expected_accuracy=model.expected_accuracy,
            engines=engines,
            fused=fused,
        )
        write_manifest(tmp, manifest)
    return manifest


def _check_fused_forms(model: ModelManifest, masks: Sequence[int], backend: Backend) -> None:
    """Refuse, before building anything, a fused graph whose expert form the backend cannot build."""
    for mask in masks:
        entry = model.fused[mask]
        if entry.experts == "routed" and not backend.routed_graphs:
            raise BundleError(f"stage '{entry.stage}': its experts are routed (data-dependent shapes), which the "
                              f"{backend.name} backend does not build; export with '--fused-experts dense', or "
                              f"build without it ('--fuse none' or the masks to keep)")


def _source(bundle: Path, model: ModelManifest, trust: TrustedKey | None) -> SourceBundle:
    return SourceBundle(path=str(bundle), manifest_sha256=sha256_file(bundle / MANIFEST), checkpoint=model.checkpoint,
                        signed_by=None if trust is None else trust.id)
