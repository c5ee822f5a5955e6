"""``int8-dynamic``: int8 weights, activations quantized at run time; the fast precision on CPUs.

At batch 1 a projection reads each of its weights once per frame, so it takes as long as reading
them: the realistic camera encoder's 18432 x 512 projection is 38 MB in fp32 and takes ~1.5 ms on
one x86 core whatever runs it (PyTorch eager as well as ONNX Runtime). Static INT8 (the ``int8``
variant's Q/DQ graph) reads a quarter of that on TensorRT, but ONNX Runtime's CPU provider runs Q/DQ
graphs slower than fp32 on CPUs without VNNI. Dynamic quantization stores the weights of every
MatMul/Gemm with a constant weight as int8, one scale per output channel, and quantizes each
activation tensor at run time with its own range (``DynamicQuantizeLinear`` -> ``MatMulInteger``,
which ONNX Runtime fuses): a quarter of the bytes, no calibration set, and the activation scale
fits every frame.

Only products whose weight is large take it (``min_weight_kib``, the recipe's
``dynamic_min_weight_kib``): a small weight stays in the cache from frame to frame, so reading it
is cheap and the per-call quantization of the activations makes the product slower (a 128 x 256
expert: 9 -> 11 us on one core). Convolutions and activation-by-activation products (attention)
stay float: ``ConvInteger`` is slower than ``Conv`` on these CPUs, and both operands of an
attention product change per frame.

TensorRT does not build these graphs (``MatMulInteger``), so only ONNX Runtime targets take them
(:attr:`edgemoe.engines.backend.Backend.precisions`).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from edgemoe.calibrate.int8 import quantizer_records_to_package_logger
from edgemoe.calibrate.sets import CalibrationError

DYNAMIC = "int8-dynamic"
QUANTIZED_OPS = ("MatMul", "Gemm")
RECORD = {"method": "dynamic", "weights": "int8, per output channel, symmetric",
          "activations": "int8, range of each tensor at run time", "ops": list(QUANTIZED_OPS)}


def large_products(graph: onnx.GraphProto, min_weight_kib: int) -> list[str]:
    """Names of the MatMul/Gemm nodes whose weight is a constant of at least ``min_weight_kib`` KiB in fp32."""
    sizes = {init.name: int(np.prod(init.dims)) * 4 for init in graph.initializer}
    return [node.name for node in graph.node
            if node.name and node.op_type in QUANTIZED_OPS and sizes.get(node.input[1], -1) >= min_weight_kib * 1024]


def quantize_dynamic_stage(stage: str, source: Path, out: Path, min_weight_kib: int) -> dict[str, Any]:
    """Write ``source``'s int8-dynamic graph to ``out``; return how it was made, for the manifest.
    A stage with no large product is written unchanged (its int8-dynamic engine is its fp32 one)."""
    model = onnx.load(source)  # parsed once: chosen from here, quantized from here
    nodes = large_products(model.graph, min_weight_kib)
    if not nodes:  # the quantizer reads an empty selection as "every node"
        shutil.copyfile(source, out)
        return {**RECORD, "min_weight_kib": min_weight_kib, "quantized": 0}
    try:
        with quantizer_records_to_package_logger():
            quantize_dynamic(model, out, weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=list(QUANTIZED_OPS),
                             # it rewrites each Gemm into a MatMul named "<gemm>_MatMul" before choosing
                             nodes_to_quantize=[*nodes, *(f"{n}_MatMul" for n in nodes)],
                             extra_options={"MatMulConstBOnly": True})
    except Exception as exc:  # the quantizer raises many types; name the stage
        out.unlink(missing_ok=True)
        raise CalibrationError(f"stage '{stage}': int8-dynamic quantization of {source.name} failed: {exc}") from exc
    ops = Counter(node.op_type for node in onnx.load(out, load_external_data=False).graph.node)
    return {**RECORD, "min_weight_kib": min_weight_kib, "quantized": ops["MatMulInteger"]}
