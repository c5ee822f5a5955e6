"""FP16 variants: float16 weights and compute, numerically sensitive nodes kept in float32.

Kept in float32: normalisations (LayerNormalization and its pieces), Softmax, every reduction
(scatter-adds included: a fused graph's routed experts sum their outputs with ``ScatterND``, which
ONNX Runtime's CPU provider also cannot run in float16), and the distance computations of the
Laplace/Gaussian gates (for those gate families the whole gate graph is the distance, so all its
nodes stay float32). Inputs and outputs stay float32
(``keep_io_types``), so the runtime binds the same buffers whatever the precision; Cast nodes
sit at the boundaries between the two types. The converter also routes the tensor between two
kept nodes (and into a float32 output) through a float32 -> float16 -> float32 Cast pair, which
would round exactly what was meant to stay float32; :func:`drop_round_trips` removes those pairs.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

from edgemoe.calibrate.sets import CalibrationError
from edgemoe.core.stages import GATE

SENSITIVE_OPS: tuple[str, ...] = (
    "LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
    "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceMax", "ReduceMin",
    "ReduceProd", "ReduceLogSum", "ReduceLogSumExp",
    "Sqrt", "Pow", "Reciprocal",
    "ScatterND", "ScatterElements",
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
    drop_round_trips(half.graph)
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


def _cast_to(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def drop_round_trips(graph: onnx.GraphProto) -> int:
    """Bypass every Cast(->float16) -> Cast(->float32) pair; return how many were bypassed."""
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    dropped: list[onnx.NodeProto] = []
    for node in graph.node:
        first = producer.get(node.input[0]) if node.input else None
        if _cast_to(node) != onnx.TensorProto.FLOAT or first is None or _cast_to(first) != onnx.TensorProto.FLOAT16:
            continue
        if node.output[0] in outputs:  # a graph output keeps its name: an Identity of the float32 source
            node.op_type = "Identity"
            del node.attribute[:]
            node.input[0] = first.input[0]
        else:
            rename[node.output[0]] = first.input[0]
            dropped.append(node)
    for node in dropped:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    used = {i for node in graph.node for i in node.input} | outputs
    for node in [n for n in graph.node if _cast_to(n) == onnx.TensorProto.FLOAT16 and n.output[0] not in used]:
        graph.node.remove(node)
    return len(rename)
