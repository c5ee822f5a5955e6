"""FP16 variants: float16 weights and compute, numerically sensitive nodes kept in float32.

Kept in float32: normalisations (LayerNormalization and its pieces), Softmax, every reduction,
and the distance computations of the Laplace/Gaussian gates (for those gate families the whole
gate graph is the distance, so all its nodes stay float32). Inputs and outputs stay float32
(``keep_io_types``), so the runtime binds the same buffers whatever the precision; Cast nodes
sit at the boundaries between the two types.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

from edgemoe.calibrate.sets import CalibrationError
from edgemoe.core.plan import GATE

SENSITIVE_OPS: tuple[str, ...] = (
    "LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceMax", "ReduceMin",
    "ReduceProd", "ReduceLogSum", "ReduceLogSumExp",
    "Sqrt", "Pow", "Reciprocal",
)
DISTANCE_GATES = ("laplace", "gaussian")


def convert_stage(stage: str, source: Path, out: Path, gate_family: str) -> dict[str, Any]:
    """Write the FP16 graph of ``source`` to ``out`` and return what stayed float32."""
    model = onnx.load(str(source))
    keep_nodes = [n.name for n in model.graph.node] if stage == GATE and gate_family in DISTANCE_GATES else []
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the converter warns about every clamped constant
            half = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(SENSITIVE_OPS),
                                            node_block_list=keep_nodes)
    except Exception as exc:
        raise CalibrationError(f"stage '{stage}': FP16 conversion failed: {exc}") from exc
    _topological_sort(half.graph)  # the converter appends its boundary Casts at the end
    onnx.checker.check_model(half)
    onnx.save_model(half, str(out), save_as_external_data=False)
    kept = sorted({n.op_type for n in model.graph.node if n.op_type in SENSITIVE_OPS or n.name in keep_nodes})
    return {"method": "fp16", "converter": "onnxruntime.transformers.float16", "io": "float32",
            "kept_float32_ops": kept, "whole_graph_float32": bool(keep_nodes)}


def _topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            raise CalibrationError(f"graph '{graph.name}': FP16 conversion left a cycle or a dangling input")
        for node in done:
            ordered.append(node)
            ready.update(node.output)
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
