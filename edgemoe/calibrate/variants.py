"""The bundle's ONNX variants as ONNX Runtime engines, combined per stage into executors.

Any assignment ``{stage: precision}`` becomes a :class:`PlanExecutor` over the same engine
protocol the deployment runs, so calibration records and accuracy tables come from the real
forward pass. Graph optimisations are off: the Q/DQ graph executes as simulated quantization,
exactly the arithmetic it states, instead of ONNX Runtime's fused integer kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgemoe.core.bundle import layout_of
from edgemoe.core.engine import Engine, TensorSpec
from edgemoe.core.errors import BundleError
from edgemoe.core.mask import Mask
from edgemoe.core.plan import all_plans
from edgemoe.engines.onnxruntime.engine import OrtEngine
from edgemoe.engines.target import OrtOptions
from edgemoe.runtime.executor import PlanExecutor

SIMULATED = OrtOptions(graph_optimization="disable", intra_op_threads=1)

Assignment = Mapping[str, str]  # stage -> precision ("fp32" | "fp16" | "int8")


class VariantEngines:
    """Loads each (stage, precision) once and hands out executors for any assignment."""

    def __init__(self, directory: Path, manifest: Mapping[str, Any], max_batch: int,
                 options: OrtOptions = SIMULATED) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self.layout = layout_of(manifest)
        self.plans = all_plans(self.layout)
        self.max_batch = max_batch
        self.max_dims = self.layout.max_dims(max_batch)
        self.options = options
        self.constants = _constants(self.directory, manifest)
        self._engines: dict[tuple[str, str], OrtEngine] = {}

    def engine(self, stage: str, precision: str) -> OrtEngine:
        key = (stage, precision)
        if key not in self._engines:
            entry = self.manifest["stages"][stage]
            variant = entry["variants"].get(precision)
            if variant is None:
                raise BundleError(f"stage '{stage}': no {precision} variant (has {sorted(entry['variants'])})")
            self._engines[key] = OrtEngine(
                stage, self.directory / variant["file"], tuple(TensorSpec.from_dict(s) for s in entry["inputs"]),
                tuple(TensorSpec.from_dict(s) for s in entry["outputs"]), self.max_dims, self.options)
        return self._engines[key]

    def executor(self, assignment: Assignment | None = None,
                 wrap: Mapping[str, Any] | None = None) -> PlanExecutor:
        """Every stage at ``assignment.get(stage, 'fp32')``; ``wrap[stage]`` may wrap an engine."""
        assignment = assignment or {}
        engines: dict[str, Engine] = {}
        for stage in self.layout.stage_names():
            engine: Engine = self.engine(stage, assignment.get(stage, "fp32"))
            if wrap and stage in wrap:
                engine = wrap[stage](engine)
            engines[stage] = engine
        return PlanExecutor(self.layout, engines, self.max_batch, self.constants)

    def predictor(self, assignment: Assignment | None = None):  # -> edgemoe.train.evaluate.Predictor
        executor = self.executor(assignment)
        sensors = self.layout.sensors

        def predict(frames: Mapping[str, np.ndarray], mask: Mask) -> np.ndarray:
            plan = self.plans[mask]
            n = next(iter(frames.values())).shape[0]
            out = np.empty((n, self.layout.num_classes), np.float32)
            for lo in range(0, n, self.max_batch):
                part = {i: np.ascontiguousarray(frames[sensors[i]][lo: lo + self.max_batch], np.float32)
                        for i in plan.present}
                out[lo: lo + self.max_batch] = executor.run(mask, part).probs
            return out

        return predict

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()


def _constants(directory: Path, manifest: Mapping[str, Any]) -> dict[str, np.ndarray]:
    entry = manifest.get("constants")
    if not entry:
        return {}
    with np.load(Path(directory) / entry["file"], allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
