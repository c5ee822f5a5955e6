"""One stage -> one single-file ONNX graph, simplified and parity-checked.

The exporter and opset are pinned (``torch.onnx.export(dynamo=True, opset_version=OPSET)``)
because PyTorch's default changed between releases. Symbolic dims keep their names (``batch``,
``tokens``) in the graph, so a TensorRT optimisation profile can be set per named dim.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgemoe.core.errors import EdgeMoEError
from edgemoe.model.moe import StageModule

OPSET = 18
EXPORTER = "torch.onnx.export(dynamo=True)"
PARITY_ATOL = 1e-4


class ExportError(EdgeMoEError):
    """A stage failed to export, simplify or match its PyTorch module."""


def example_inputs(stage: StageModule, sizes: Mapping[str, int], seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(*[d if isinstance(d, int) else sizes[d] for d in spec.shape], generator=gen)
        for spec in stage.inputs
    )


def export_stage(name: str, stage: StageModule, max_dims: Mapping[str, int], simplify: bool = True) -> onnx.ModelProto:
    """Export, simplify (onnxsim, with its own numeric check) and verify one stage."""
    module = stage.module.eval()
    sizes = {k: min(2, v) for k, v in max_dims.items()}
    dynamic = tuple(
        {i: torch.export.Dim(d, min=1, max=max(2, max_dims[d])) for i, d in enumerate(spec.shape) if isinstance(d, str)}
        for spec in stage.inputs
    )
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, example_inputs(stage, sizes), dynamo=True, opset_version=OPSET,
                input_names=[s.name for s in stage.inputs], output_names=[s.name for s in stage.outputs],
                dynamic_shapes=dynamic, external_data=False, verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; name the stage
        raise ExportError(f"stage '{name}': torch.onnx export failed: {exc}") from exc
    model = program.model_proto
    if simplify:
        shapes = {spec.name: [d if isinstance(d, int) else sizes[d] for d in spec.shape] for spec in stage.inputs}
        model = simplify_graph(name, model, shapes)
    check_parity(name, stage, model, max_dims)
    return model


def simplify_graph(name: str, model: onnx.ModelProto,
                   shapes: Mapping[str, list[int]] | None = None) -> onnx.ModelProto:
    """onnxsim with its numeric check; ``shapes`` pins the check's input shapes (needed when a
    dynamic dim other than the first exists). Skipped where onnxsim is not installed."""
    try:
        import onnxsim
    except ImportError:  # onnxsim has no wheels for every Python; simplification is optional
        return model
    with contextlib.redirect_stdout(io.StringIO()):  # onnxsim narrates its checks on stdout
        # explicit check shapes: a dim the exporter left unnamed would otherwise stop the check
        simplified, ok = onnxsim.simplify(model, check_n=2, test_input_shapes=dict(shapes or {}))
    if not ok:
        raise ExportError(f"stage '{name}': onnxsim's numeric check failed on the simplified graph")
    return simplified


def check_parity(name: str, stage: StageModule, model: onnx.ModelProto, max_dims: Mapping[str, int]) -> float:
    """ONNX Runtime vs PyTorch on random inputs at the smallest and largest dynamic sizes."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for sizes in ({k: 1 for k in max_dims}, dict(max_dims)):
        args = example_inputs(stage, sizes, seed=1)
        with torch.no_grad():
            expected = stage.module(*args)
        expected_t = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {s.name: a.numpy() for s, a in zip(stage.inputs, args)})
        for spec, want, have in zip(stage.outputs, expected_t, got):
            err = float(np.max(np.abs(want.numpy() - have))) if have.size else 0.0
            if have.shape != tuple(want.shape) or err > PARITY_ATOL:
                raise ExportError(
                    f"stage '{name}' output '{spec.name}': ONNX differs from PyTorch at sizes {sizes} "
                    f"(shape {list(have.shape)} vs {list(want.shape)}, max abs err {err:.2e} > {PARITY_ATOL})"
                )
            worst = max(worst, err)
    return worst
