"""The ONNX Runtime backend (``"onnxruntime"``): the embedded default, runs everywhere.

Modules: ``engine`` (a stage's session behind the engine protocol, driven through io-binding),
``backend`` (the engine file is the stage's ONNX graph; build = copy + test load), ``cpu`` (whether
this CPU's int8 kernels saturate, recorded at build).
"""

from edgemoe.engines.onnxruntime.backend import OrtBackend
from edgemoe.engines.onnxruntime.engine import OrtEngine

__all__ = ["OrtBackend", "OrtEngine"]
