"""Load an engine bundle: validate everything, load every engine, warm every engine.

Nothing is loaded lazily: after :func:`load_engine_bundle` returns, every stage of every mask is
in memory and has run at both ends of its shape profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.core.bundle import ENGINE_FORMAT, config_of, layout_of, read_manifest, verify_file
from edgemoe.core.engine import Engine, TensorSpec
from edgemoe.core.errors import BundleError
from edgemoe.core.stages import FUSED_DIMS, StageLayout
from edgemoe.core.schema import ModelConfig
from edgemoe.engines.backend import Backend, get_backend
from edgemoe.engines.target import TargetProfile

REBUILD = "rebuild with 'edgemoe build BUNDLE --target PROFILE --out ENGINES'"


@dataclass
class EngineBundle:
    """Everything a runtime needs, already loaded and warm."""

    path: Path
    manifest: dict[str, Any]
    config: ModelConfig
    layout: StageLayout
    engines: dict[str, Engine]
    constants: dict[str, np.ndarray]
    max_batch: int
    fused: dict[int, Engine] = field(default_factory=dict)  # mask -> its whole forward, batch 1

    def expected_accuracy(self, mask: int) -> float | None:
        table = self.manifest.get("expected_accuracy") or {}
        value = table.get("masks", {}).get(str(mask))
        return None if value is None else float(value)

    def close(self) -> None:
        for engine in (*self.engines.values(), *self.fused.values()):
            engine.close()


def load_engine_bundle(path: Path, warm: bool = True,
                       on_stage: Callable[[str], None] = lambda stage: None) -> EngineBundle:
    path = Path(path)
    manifest = read_manifest(path, ENGINE_FORMAT)
    config = config_of(manifest, str(path))
    layout = layout_of(manifest)
    target = TargetProfile.model_validate(manifest["target"])
    backend = get_backend(manifest["backend"])
    backend.check_environment(manifest.get("environment", {}), target)
    max_dims = {k: int(v) for k, v in manifest["max_dims"].items()}

    def load(stage: str, entry: dict[str, Any] | None, dims: dict[str, int]) -> Engine:
        on_stage(stage)
        engine = _load(path, stage, entry, dims, backend, target)
        if warm:
            engine.warmup()
        return engine

    engines = {stage: load(stage, manifest["engines"].get(stage), max_dims) for stage in layout.stage_names()}
    fused = {int(key): load(entry["stage"], entry, FUSED_DIMS)
             for key, entry in (manifest.get("fused") or {}).items()}
    return EngineBundle(path, manifest, config, layout, engines, _constants(path, manifest), max_dims["batch"],
                        fused)


def load_engine(path: Path, manifest: dict[str, Any], stage: str, entry: dict[str, Any] | None,
                dims: dict[str, int]) -> Engine:
    """One engine of the bundle at ``path`` on a backend of its own (checked against its sha256,
    not warmed): the profiler loads one more copy to measure what it costs."""
    target = TargetProfile.model_validate(manifest["target"])
    return _load(path, stage, entry, dims, get_backend(manifest["backend"]), target)


def _load(path: Path, stage: str, entry: dict[str, Any] | None, dims: dict[str, int], backend: Backend,
          target: TargetProfile) -> Engine:
    """The engines of one bundle share one ``backend`` (a TensorRT backend shares its stream and
    scratch memory between them)."""
    if entry is None:
        raise BundleError(f"{path}: no engine for stage '{stage}' in the manifest; {REBUILD}")
    file = verify_file(path, entry, f"engine '{stage}'", REBUILD)
    inputs = tuple(TensorSpec.from_dict(s) for s in entry["inputs"])
    outputs = tuple(TensorSpec.from_dict(s) for s in entry["outputs"])
    return backend.load_stage(stage, file, inputs, outputs, dims, target)


def _constants(path: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    entry = manifest.get("constants")
    if not entry:
        return {}
    with np.load(verify_file(path, entry, "constants", REBUILD), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
