"""The PyTorch reference as engines: stage modules wrapped in the engine protocol.

With these, :class:`~edgemoe.runtime.executor.PlanExecutor` runs the very plans the deployment runs,
over the PyTorch modules; parity tests compare the three paths (model forward, plan over modules,
plan over engines). This adapter belongs to the export side: the model never imports the runtime
and the runtime never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from edgemoe.core.engine import TensorSpec, bind_inputs
from edgemoe.model.moe import MoEModel, StageModule


class TorchStageEngine:
    """One stage module behind the engine protocol (synchronous, CPU)."""

    def __init__(self, name: str, stage: StageModule, max_dims: Mapping[str, int]) -> None:
        self.name = name
        self.module = stage.module.eval()
        self.inputs: tuple[TensorSpec, ...] = stage.inputs
        self.outputs: tuple[TensorSpec, ...] = stage.outputs
        self._buffers = {s.name: np.zeros(s.max_shape(max_dims), s.dtype) for s in stage.inputs}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._result: dict[str, np.ndarray] = {}

    def input(self, name: str, shape: Sequence[int]) -> np.ndarray:
        size = int(np.prod(shape))
        self._shapes[name] = tuple(shape)
        return self._buffers[name].reshape(-1)[:size].reshape(shape)

    def launch(self) -> None:
        bind_inputs(self.inputs, self._shapes, self.name)
        args = [torch.from_numpy(self.input(s.name, self._shapes[s.name]).copy()) for s in self.inputs]
        with torch.no_grad():
            out = self.module(*args)
        outs = out if isinstance(out, tuple) else (out,)
        self._result = {spec.name: t.numpy() for spec, t in zip(self.outputs, outs)}

    def wait(self) -> Mapping[str, np.ndarray]:
        return self._result

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        self._result = {}


def torch_engines(model: MoEModel, max_batch: int) -> dict[str, TorchStageEngine]:
    max_dims = model.layout().max_dims(max_batch)
    return {name: TorchStageEngine(name, stage, max_dims) for name, stage in model.stage_modules().items()}
