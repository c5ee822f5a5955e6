"""The monolithic baseline: the whole model as ONE ONNX graph, what a user would otherwise ship.

Every sensor is an input (a missing sensor is fed zeros) plus a ``present`` ``[B, M]`` float input
so the answer equals the model's; top-k and every expert sit inside the graph. Such a graph runs
all encoders and all experts for every frame, whatever is missing — which is what the per-mask
runtime is measured against (benchmarks/). It is a comparison artefact, not a deployment path.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from edgemoe.core.stages import PROBS
from edgemoe.export.onnx_stage import OPSET, ExportError, simplify_graph
from edgemoe.model.moe import MoEModel

PRESENT = "present"


class MonolithicMoE(nn.Module):
    """``(*frames, present) -> probs``: the training forward, eval mode, softmax at the end."""

    def __init__(self, model: MoEModel) -> None:
        super().__init__()
        self.model = model.eval()
        self.names = model.config.sensor_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        frames = dict(zip(self.names, inputs[:-1]))
        present = inputs[-1] > 0.5
        return torch.softmax(self.model(frames, present).logits, dim=-1)


def export_graph(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str], max_batch: int | None,
                 what: str, simplify: bool) -> onnx.ModelProto:
    """A whole-model module (frames in, ``probs`` out) as one graph; ``max_batch=None`` exports
    static shapes (the example's)."""
    dynamic = None
    if max_batch is not None:
        batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
        dynamic = (tuple({0: batch} for _ in example),)  # one entry: forward takes *inputs
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, example, dynamo=True, opset_version=OPSET, input_names=names,
                output_names=[PROBS], dynamic_shapes=dynamic, external_data=False, verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; name what failed
        raise ExportError(f"{what}: torch.onnx export failed: {exc}") from exc
    if program is None:
        raise ExportError(f"{what}: torch.onnx export returned nothing")
    graph = program.model_proto
    return simplify_graph(what, graph) if simplify else graph


def check_graph(graph: onnx.ModelProto, args: tuple[torch.Tensor, ...], want: np.ndarray, what: str) -> None:
    """ONNX Runtime on ``args`` must give ``want`` (the module's answer) within 1e-4."""
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0]
    err = float(np.abs(want - got).max())
    if err > 1e-4:
        raise ExportError(f"{what}: ONNX differs from PyTorch (max abs err {err:.2e} > 1e-4)")


def export_monolithic(model: MoEModel, max_batch: int = 8, simplify: bool = True) -> onnx.ModelProto:
    """Export the whole forward (dynamic batch) and check it against PyTorch on random frames."""
    wrapper = MonolithicMoE(model)
    config = model.config
    gen = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(2, *s.shape, generator=gen) for s in config.sensors)
    example += (torch.ones(2, config.num_sensors),)
    graph = export_graph(wrapper, example, [*config.sensor_names, PRESENT], max_batch, "monolithic model", simplify)
    present = example[-1].clone()
    present[0, 0] = 0.0  # one sample with a missing sensor, so masking is exercised too
    args = (*example[:-1], present)
    with torch.no_grad():
        want = wrapper(*args).numpy()
    check_graph(graph, args, want, "monolithic model")
    return graph
