"""The TensorRT backend (registers ``"tensorrt"``; TensorRT itself is imported only when used).

Modules: ``detect`` (is a real TensorRT / GPU here), ``profiles`` (shapes, precision, placement),
``manifest`` (what is recorded and checked), ``builder`` (ONNX -> engine), ``cuda`` (cuda-python
buffers, stream, graphs), ``engine`` (the engine protocol over an execution context).
"""

from edgemoe.engines.tensorrt.backend import TensorRTBackend

__all__ = ["TensorRTBackend"]
