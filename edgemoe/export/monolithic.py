"""Whole-model graphs: the monolithic baseline, and fused per-mask engines for hot masks.

``export_monolithic``: the whole model as ONE ONNX graph, the baseline a user would otherwise ship.

Every sensor is an input (a missing sensor is fed zeros) plus a ``present`` ``[B, M]`` float input
so the answer equals the model's; top-k and every expert sit inside the graph. Such a graph runs
all encoders and all experts for every frame, whatever is missing — which is what the per-mask
runtime is measured against (benchmarks/). It is a comparison artefact, not a deployment path.

``export_fused``: one mask's whole forward as one batch-1 graph — only that mask's encoders (the
others fold away), its fillers, gate, top-k, every expert densely and the head — so a hot mask
runs as one engine call instead of one per stage, trading memory (a second copy of the weights)
for dispatch. The bundle carries them beside the stages (``fused`` in the manifest), the runtime
uses them for single frames of their mask, and ``edgemoe profile`` measures the latency gained and
the memory paid per fused mask and chooses which masks are worth it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

import numpy as np
import onnx
import torch
from torch import nn

from edgemoe.core.mask import masks_to_bits
from edgemoe.core.stages import fused_stage
from edgemoe.export.onnx_stage import OPSET, ExportError, simplify_graph
from edgemoe.model.smoe import SparseMoE

PRESENT = "present"


class MonolithicMoE(nn.Module):
    """``(*frames, present) -> probs``: the training forward, eval mode, softmax at the end."""

    def __init__(self, model: SparseMoE) -> None:
        super().__init__()
        self.model = model.eval()
        self.names = model.config.sensor_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        frames = dict(zip(self.names, inputs[:-1]))
        present = inputs[-1] > 0.5
        return torch.softmax(self.model(frames, present).logits, dim=-1)


def monolithic_feeds(model: SparseMoE, frames: Mapping[str, np.ndarray], mask: int) -> dict[str, np.ndarray]:
    """Feeds for the monolithic graph: zeros for the sensors missing from ``mask``."""
    config = model.config
    batch = next(iter(frames.values())).shape[0]
    bits = masks_to_bits(np.full(batch, mask), config.num_sensors)
    feeds = {}
    for i, spec in enumerate(config.sensors):
        given = frames.get(spec.name)
        feeds[spec.name] = (np.ascontiguousarray(given, np.float32) if bits[0, i] and given is not None
                            else np.zeros((batch, *spec.shape), np.float32))
    feeds[PRESENT] = bits.astype(np.float32)
    return feeds


class FusedMask(nn.Module):
    """``(*present frames) -> probs`` for one mask at batch 1: the model's own forward with the
    mask baked in as a constant. The missing sensors' inputs are constant zeros, so constant
    folding removes their encoders (and the filler work that depends only on the mask) from the
    graph; every method's forward works unchanged, which is what keeps fused and staged answers
    equal."""

    def __init__(self, model: SparseMoE, mask: int) -> None:
        super().__init__()
        self.model = model.eval()
        self.specs = model.config.sensors
        self.present_names = [s.name for i, s in enumerate(self.specs) if mask >> i & 1]
        bits = masks_to_bits(np.array([mask]), model.config.num_sensors)
        self.register_buffer("present", torch.from_numpy(bits), persistent=False)

    def forward(self, *frames: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.present_names, frames))
        inputs = {s.name: given.get(s.name, torch.zeros(1, *s.shape)) for s in self.specs}
        return torch.softmax(self.model(inputs, self.present).logits, dim=-1)


def export_fused(model: SparseMoE, mask: int, simplify: bool = True) -> onnx.ModelProto:
    """One mask's forward as one batch-1 graph (inputs: the present sensors' frames, named as
    sensors), checked against the model on random frames."""
    wrapper = FusedMask(model, mask)
    specs = [model.config.sensor(n) for n in wrapper.present_names]
    if not specs:
        raise ExportError(f"{fused_stage(mask)}: the empty mask has no forward to fuse")
    gen = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(1, *s.shape, generator=gen) for s in specs)
    graph = _export(wrapper, example, [s.name for s in specs], None, fused_stage(mask), simplify)
    with torch.no_grad():
        want = wrapper(*example).numpy()
    _compare(graph, example, want, fused_stage(mask))
    return graph


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], names: list[str], max_batch: int | None,
            what: str, simplify: bool) -> onnx.ModelProto:
    """``max_batch=None`` exports static shapes (the example's)."""
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
                output_names=["probs"], dynamic_shapes=dynamic, external_data=False, verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; name what failed
        raise ExportError(f"{what}: torch.onnx export failed: {exc}") from exc
    if program is None:
        raise ExportError(f"{what}: torch.onnx export returned nothing")
    graph = program.model_proto
    return simplify_graph(what, graph) if simplify else graph


def _compare(graph: onnx.ModelProto, args: tuple[torch.Tensor, ...], want: np.ndarray, what: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0]
    err = float(np.abs(want - got).max())
    if err > 1e-4:
        raise ExportError(f"{what}: ONNX differs from PyTorch (max abs err {err:.2e} > 1e-4)")


def export_monolithic(model: SparseMoE, max_batch: int = 8, simplify: bool = True) -> onnx.ModelProto:
    """Export the whole forward (dynamic batch) and check it against PyTorch on random frames."""
    wrapper = MonolithicMoE(model)
    config = model.config
    gen = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(2, *s.shape, generator=gen) for s in config.sensors)
    example += (torch.ones(2, config.num_sensors),)
    graph = _export(wrapper, example, [*config.sensor_names, PRESENT], max_batch, "monolithic model", simplify)
    present = example[-1].clone()
    present[0, 0] = 0.0  # one sample with a missing sensor, so masking is exercised too
    args = (*example[:-1], present)
    with torch.no_grad():
        want = wrapper(*args).numpy()
    _compare(graph, args, want, "monolithic model")
    return graph
