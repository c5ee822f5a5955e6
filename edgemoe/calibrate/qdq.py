"""The Q/DQ validator: an INT8 graph TensorRT's explicit-quantization path accepts.

Rules (see docs/calibration.md and DEPLOYMENT.md):
1. opset of the default domain >= 13;
2. every QuantizeLinear/DequantizeLinear has a constant int8 zero point that is all zeros
   (symmetric; uint8 and asymmetric graphs are refused) and a constant, positive, finite scale;
3. no DequantizeLinear reads a quantized constant directly: weights enter as float -> Q -> DQ
   pairs (TensorRT 8.6), and no int32 bias is dequantized (TensorRT's parser rejects it);
4. the weights of Conv/ConvTranspose/Gemm/MatMul are quantized per channel (a 1-D scale with
   one entry per output channel) when they are quantized;
5. the graph has at least one Q/DQ pair (an "INT8" graph without quantization is a mistake).

A violation raises :class:`QDQError` listing every offending node, so the export fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from edgemoe.calibrate.sets import CalibrationError

MIN_OPSET = 13
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


class QDQError(CalibrationError):
    """An INT8 graph breaks a rule of TensorRT-legal explicit quantization."""


@dataclass(frozen=True)
class QDQSummary:
    quantize: int
    dequantize: int
    per_channel_weights: int


def validate_qdq(model: onnx.ModelProto, stage: str) -> QDQSummary:
    """Check every rule; raise :class:`QDQError` naming the stage and each violating node."""
    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:  # Constant nodes are constants too
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = node.attribute[0].t
    producer = {out: node for node in graph.node for out in node.output}
    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        problems.append(f"opset {opset} < {MIN_OPSET}")
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    if not quantize or not dequantize:
        problems.append("no QuantizeLinear/DequantizeLinear nodes: not a Q/DQ graph")
    for node in quantize + dequantize:
        problems += _check_scale_and_zero_point(node, consts)
    for node in dequantize:
        if node.input[0] in consts:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(consts[node.input[0]].data_type)
            what = "a quantized int32 bias" if dtype == np.int32 else "a pre-quantized constant"
            problems.append(f"{node.op_type} '{node.name}' reads {what} '{node.input[0]}' ({dtype}); "
                            "weights must enter as float -> QuantizeLinear -> DequantizeLinear and biases stay float")
    per_channel = 0
    for node in graph.node:
        slot = WEIGHT_INPUT.get(node.op_type)
        if slot is None or len(node.input) <= slot:
            continue
        dq = producer.get(node.input[slot])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in consts:
            continue  # weight not quantized (or an activation): nothing to check here
        weight = numpy_helper.to_array(consts[q.input[0]])
        scale = numpy_helper.to_array(consts[q.input[1]]) if q.input[1] in consts else np.zeros(0)
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        channels = weight.shape[axis] if weight.ndim else 1
        if weight.ndim >= 2 and channels > 1 and (scale.ndim != 1 or scale.size != channels):
            problems.append(f"{node.op_type} '{node.name}': weight '{q.input[0]}' {list(weight.shape)} is quantized "
                            f"per tensor (scale shape {list(scale.shape)}); per-channel (axis {axis}, "
                            f"{channels} scales) required")
        else:
            per_channel += 1
    if problems:
        listed = "\n  - ".join(problems)
        raise QDQError(f"stage '{stage}': INT8 graph violates {len(problems)} Q/DQ rule(s):\n  - {listed}")
    return QDQSummary(len(quantize), len(dequantize), per_channel)


def _check_scale_and_zero_point(node: onnx.NodeProto, consts: dict[str, onnx.TensorProto]) -> list[str]:
    problems = []
    where = f"{node.op_type} '{node.name}'"
    if len(node.input) < 3 or not node.input[2]:
        return [f"{where}: no zero point (defaults to uint8); an explicit int8 zero point of 0 is required"]
    if node.input[2] not in consts:
        problems.append(f"{where}: zero point '{node.input[2]}' is not a constant")
    else:
        zp = consts[node.input[2]]
        if zp.data_type != onnx.TensorProto.INT8:
            problems.append(f"{where}: zero point is {onnx.TensorProto.DataType.Name(zp.data_type)}, int8 required")
        if np.any(numpy_helper.to_array(zp) != 0):
            problems.append(f"{where}: zero point {numpy_helper.to_array(zp).ravel()[:4].tolist()} is not 0 "
                            "(asymmetric quantization; TensorRT needs symmetric)")
    if node.input[1] not in consts:
        problems.append(f"{where}: scale '{node.input[1]}' is not a constant")
    else:
        scale = numpy_helper.to_array(consts[node.input[1]])
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{where}: scale must be positive and finite")
    return problems
