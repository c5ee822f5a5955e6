"""Load an engine bundle: validate everything, load every engine, warm every engine.

Nothing is loaded lazily: after :func:`load_engine_bundle` returns, every stage of every mask is
in memory and has run at both ends of its shape profile. Each engine comes from its
:class:`EngineLoader` (one manifest entry, a plain callable), which the bundle keeps, so a caller
that needs one more copy of an engine (the profiler measuring what it costs) calls the same loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgemoe.core.bundle import read_constants, read_engine_manifest
from edgemoe.core.config import validate_as
from edgemoe.core.engine import Engine
from edgemoe.core.errors import BundleError
from edgemoe.core.manifest import ENGINE_KIND, KINDS, EngineManifest
from edgemoe.core.stages import FUSED_DIMS, StageLayout
from edgemoe.core.schema import ModelConfig
from edgemoe.core.signing import TrustedKey
from edgemoe.engines.backend import get_backend
from edgemoe.engines.loader import EngineLoader
from edgemoe.engines.target import TargetProfile

REBUILD = KINDS[ENGINE_KIND][2]


@dataclass
class EngineBundle:
    """Everything a runtime needs, already loaded and warm."""

    path: Path
    manifest: EngineManifest
    engines: dict[str, Engine]
    constants: dict[str, np.ndarray]
    loaders: dict[str, EngineLoader]  # stage (fused ones included) -> how its engine was loaded
    fused: dict[int, Engine] = field(default_factory=dict)  # mask -> its whole forward, batch 1

    @property
    def config(self) -> ModelConfig:
        return self.manifest.config

    @property
    def layout(self) -> StageLayout:
        return self.manifest.layout

    @property
    def max_batch(self) -> int:
        return self.manifest.max_dims["batch"]

    def expected_accuracy(self, mask: int) -> float | None:
        return self.manifest.expected_accuracy_of(mask)

    def close(self) -> None:
        for engine in (*self.engines.values(), *self.fused.values()):
            engine.close()


def engine_loaders(path: Path, manifest: EngineManifest) -> dict[str, EngineLoader]:
    """One loader per engine of the bundle (stages in execution order, then fused engines), all on
    one backend instance; refuses a manifest that lacks a stage of its own layout."""
    target = validate_as(TargetProfile, manifest.target, f"{path} (manifest 'target')")
    backend = get_backend(manifest.backend)
    backend.check_environment(manifest.environment, target)
    loaders = {}
    for stage in manifest.layout.stage_names():
        entry = manifest.engines.get(stage)
        if entry is None:
            raise BundleError(f"{path}: no engine for stage '{stage}' in the manifest; {REBUILD}")
        loaders[stage] = EngineLoader.of(path, stage, entry, manifest.max_dims, backend, target, REBUILD)
    for fused in manifest.fused.values():
        loaders[fused.stage] = EngineLoader.of(path, fused.stage, fused, FUSED_DIMS, backend, target, REBUILD)
    return loaders


def load_engine_bundle(path: Path, warm: bool = True, on_stage: Callable[[str], None] = lambda stage: None,
                       trust: TrustedKey | None = None) -> EngineBundle:
    """Load (and warm) every engine of the bundle at ``path``. A symlink is resolved once, so
    every file comes from the same build even if the link is repointed meanwhile; with ``trust``
    the manifest must carry that key's signature."""
    path = Path(path).resolve()
    manifest = read_engine_manifest(path, trust)
    loaders = engine_loaders(path, manifest)

    def load(stage: str) -> Engine:
        on_stage(stage)
        engine = loaders[stage]()
        if warm:
            engine.warmup()
        return engine

    engines = {stage: load(stage) for stage in manifest.layout.stage_names()}
    fused = {mask: load(entry.stage) for mask, entry in manifest.fused.items()}
    return EngineBundle(path, manifest, engines, read_constants(path, manifest.constants, REBUILD), loaders, fused)

