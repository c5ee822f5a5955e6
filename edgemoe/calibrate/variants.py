"""The bundle's ONNX variants as ONNX Runtime engines, combined per stage into executors.

Any assignment ``{stage: precision}`` becomes a :class:`PlanExecutor` over the same engine
protocol the deployment runs, so calibration records and accuracy tables come from the real
forward pass. Every engine comes from an :class:`EngineLoader` made from the variant's manifest
entry, through the backend registry and the sha256 check, like the runtime's. Graph
optimisations are off: the Q/DQ graph executes as simulated quantization, exactly the arithmetic
it states, instead of ONNX Runtime's fused integer kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from edgemoe.core.batching import run_batched
from edgemoe.core.bundle import read_constants
from edgemoe.core.engine import Engine
from edgemoe.core.errors import BundleError
from edgemoe.core.manifest import KINDS, MODEL_KIND, ModelManifest
from edgemoe.core.mask import Mask
from edgemoe.core.stages import FUSED_DIMS, fused_stage
from edgemoe.engines.backend import get_backend
from edgemoe.engines.loader import EngineLoader
from edgemoe.engines.target import OrtOptions, TargetProfile
from edgemoe.runtime.executor import PlanExecutor

SIMULATED = TargetProfile(name="calibration", backend="onnxruntime",
                          onnxruntime=OrtOptions(graph_optimization="disable", intra_op_threads=1))
REEXPORT = KINDS[MODEL_KIND][2]

Assignment = Mapping[str, str]  # stage -> precision (core.manifest.PRECISIONS)


class VariantEngines:
    """Loads each (stage, precision) once and hands out executors for any assignment."""

    def __init__(self, directory: Path, manifest: ModelManifest, max_batch: int,
                 target: TargetProfile = SIMULATED) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self.layout = manifest.layout
        self.max_batch = max_batch
        self.max_dims = self.layout.max_dims(max_batch)
        self.target = target
        self.backend = get_backend(target.backend)
        self.constants = read_constants(self.directory, manifest.constants, REEXPORT)
        self._engines: dict[tuple[str, str], Engine] = {}

    def loader(self, stage: str, precision: str) -> EngineLoader:
        """A stage's variant, or a fused graph's (``fused[<mask>]``, batch 1)."""
        fused = {e.stage: e for e in self.manifest.fused.values()}
        entry = fused[stage] if stage in fused else self.manifest.stages[stage]
        variant = entry.variants.get(precision)
        if variant is None:
            raise BundleError(f"stage '{stage}': no {precision} variant (has {sorted(entry.variants)})")
        dims = FUSED_DIMS if stage in fused else self.max_dims
        return EngineLoader(self.directory, stage, variant, entry.inputs, entry.outputs, dims,
                            self.backend, self.target, REEXPORT)

    def engine(self, stage: str, precision: str) -> Engine:
        key = (stage, precision)
        if key not in self._engines:
            self._engines[key] = self.loader(stage, precision)()
        return self._engines[key]

    def fused_predictor(self, mask: Mask, precision: str):  # -> edgemoe.train.evaluate.Predictor
        """The mask's fused graph at ``precision``, one frame at a time (it serves single frames)."""
        fused = self.engine(fused_stage(mask), precision)
        executor = PlanExecutor(self.layout, {s: self.engine(s, "fp32") for s in self.layout.stage_names()},
                                self.max_batch, self.constants, {mask: fused})
        names = self.manifest.config.sensor_names
        present = [i for i in range(len(names)) if mask >> i & 1]

        def predict(frames: Mapping[str, np.ndarray], _: Mask) -> np.ndarray:
            rows = len(frames[names[present[0]]])
            return np.concatenate([executor.run(mask, {i: frames[names[i]][r : r + 1] for i in present}).probs
                                   for r in range(rows)])

        return predict

    def executor(self, assignment: Assignment | None = None,
                 wrap: Mapping[str, Callable[[Engine], Engine]] | None = None) -> PlanExecutor:
        """Every stage at ``assignment.get(stage, 'fp32')``; ``wrap[stage]`` may wrap an engine."""
        assignment = assignment or {}
        engines: dict[str, Engine] = {}
        for stage in self.layout.stage_names():
            engine = self.engine(stage, assignment.get(stage, "fp32"))
            if wrap and stage in wrap:
                engine = wrap[stage](engine)
            engines[stage] = engine
        return PlanExecutor(self.layout, engines, self.max_batch, self.constants)

    def predictor(self, assignment: Assignment | None = None):  # -> edgemoe.train.evaluate.Predictor
        executor = self.executor(assignment)

        def predict(frames: Mapping[str, np.ndarray], mask: Mask) -> np.ndarray:
            return run_batched(executor, mask, frames)

        return predict

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
