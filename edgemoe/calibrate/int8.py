"""INT8 variants: ONNX Runtime's static quantizer, configured for TensorRT explicit quantization.

QDQ format, int8 activations and weights with zero point 0 (``ActivationSymmetric`` and
``WeightSymmetric``), per-channel weights, biases left in float (``QuantizeBias: False``: a
dequantized int32 bias is rejected by TensorRT's parser) and weights as float -> Q -> DQ pairs
(``AddQDQPairToWeight``, for TensorRT 8.6). Every result goes through :func:`validate_qdq`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime.quantization
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from edgemoe.calibrate.qdq import QDQSummary, validate_qdq
from edgemoe.calibrate.sets import CalibrationError

CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                       "entropy": CalibrationMethod.Entropy}
EXTRA_OPTIONS: dict[str, Any] = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    "AddQDQPairToWeight": True,
    "DedicatedQDQPair": False,
}
# Quantized op types: the matrix products and convolutions, where INT8 pays on a GPU. Norms,
# softmax and elementwise ops stay float (TensorRT fuses them around the Q/DQ'd products).
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
READER_CHUNK = 64
log = logging.getLogger("edgemoe.calibrate")
_QUANTIZER = str(Path(onnxruntime.quantization.__file__).parent)


class _QuantizerRecords(logging.Filter):
    """Takes the quantizer's own records (it logs through module-level ``logging.warning``, i.e.
    the root logger) off the root logger's handlers and hands them to ``edgemoe.calibrate`` at
    DEBUG; every other record passes untouched, and the root logger's level is never changed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.pathname.startswith(_QUANTIZER):
            return True
        log.debug("onnxruntime.quantization: %s", record.getMessage())
        return False


@contextlib.contextmanager
def quantizer_records_to_package_logger() -> Iterator[None]:
    root, only = logging.getLogger(), _QuantizerRecords()
    root.addFilter(only)
    try:
        yield
    finally:
        root.removeFilter(only)


class StageSetReader(CalibrationDataReader):
    """ONNX Runtime's calibration protocol over one stage's set, in chunks of rows."""

    def __init__(self, stage_set: Mapping[str, np.ndarray], chunk: int = READER_CHUNK) -> None:
        n = len(next(iter(stage_set.values())))
        self._feeds = iter([{k: np.ascontiguousarray(v[lo: lo + chunk]) for k, v in stage_set.items()}
                            for lo in range(0, n, chunk)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_stage(stage: str, source: Path, stage_set: Mapping[str, np.ndarray], out: Path,
                   method: str = "minmax", chunk: int = READER_CHUNK) -> QDQSummary:
    """Write the INT8 Q/DQ graph of ``source`` to ``out``; raise naming the stage if it is not legal.
    ``chunk`` rows are fed per call (1 for a graph of static batch 1, a fused one)."""
    try:
        with quantizer_records_to_package_logger():
            quantize_static(
                str(source), str(out), StageSetReader(stage_set, chunk), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, reduce_range=False,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=CALIBRATION_METHODS[method], extra_options=dict(EXTRA_OPTIONS),
            )
    except Exception as exc:  # the quantizer raises many types; name the stage
        raise CalibrationError(f"stage '{stage}': INT8 quantization failed: {exc}") from exc
    return validate_qdq(onnx.load(str(out)), stage)


def quantization_record(method: str) -> dict[str, Any]:
    """What the manifest says about how a variant was quantized."""
    return {"format": "QDQ", "activations": "int8 symmetric (zero point 0)", "weights": "int8 symmetric per-channel",
            "calibration_method": method, "quantized_ops": list(QUANTIZED_OPS), "quantizer": "onnxruntime.quantization.quantize_static",
            "extra_options": dict(EXTRA_OPTIONS)}
