"""A contract-checking FAKE of ``tensorrt`` and ``cuda.bindings.runtime``, for tests only.

It lives under ``tests/`` (never packaged, never imported by ``edgemoe``) and is put in place
only inside a test, by :func:`installed`, which swaps the two modules in ``sys.modules`` and
drops the backend modules that bound the real ones at import, restoring everything afterwards.
It runs the backend's logic (build -> manifest -> load -> infer -> close) on a plain CPU and
fails every misuse the real API punishes; it proves nothing about speed or about what real
TensorRT kernels compute: ``device_tests/`` on a GPU remain the truth for that.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from tests.fake_tensorrt.cudart import make_cudart
from tests.fake_tensorrt.device import ContractViolation, DeviceSpec, FakeDevice
from tests.fake_tensorrt.trt import make_tensorrt

__all__ = ["DEVICES", "ContractViolation", "DeviceSpec", "FakeDevice", "installed"]

# What each target profile's device reports (facts from NVIDIA's module data sheets: SM counts,
# DLA cores, the TensorRT of the JetPack that ships for it).
_ORIN_AGX = DeviceSpec("Orin", 8, 7, integrated=True, sm_count=16, dla_cores=2, total_memory=32 << 30)
DEVICES = {
    "x86-gpu": DeviceSpec("NVIDIA RTX A4000", 8, 6, integrated=False, sm_count=48, dla_cores=0,
                          tensorrt="10.13.0.35", cuda=12090, total_memory=16 << 30),
    "jetson-orin-nano": DeviceSpec("Orin", 8, 7, integrated=True, sm_count=8, dla_cores=0),
    "jetson-agx-orin": _ORIN_AGX,
    "jetson-agx-orin-dla": _ORIN_AGX,
    "jetson-thor": DeviceSpec("NVIDIA Thor", 11, 0, integrated=True, sm_count=20, dla_cores=0,
                              tensorrt="10.13.0.35", cuda=13000, total_memory=128 << 30),
}
# backend modules that hold the ``tensorrt`` module they imported
_BOUND = ("edgemoe.engines.tensorrt.builder", "edgemoe.engines.tensorrt.engine", "edgemoe.engines.tensorrt.log")
_SWAPPED = ("tensorrt", "cuda.bindings.runtime")


@contextmanager
def installed(spec: DeviceSpec) -> Iterator[FakeDevice]:
    """The fake modules in place of the real ones for the duration of the block."""
    import edgemoe.engines.tensorrt.cuda as cuda_layer

    device = FakeDevice(spec)
    saved: dict[str, ModuleType | None] = {name: sys.modules.get(name) for name in _BOUND + _SWAPPED}
    saved_cudart = cuda_layer.cudart
    try:
        for name in _BOUND:
            sys.modules.pop(name, None)
        sys.modules["tensorrt"] = make_tensorrt(device)
        sys.modules["cuda.bindings.runtime"] = make_cudart(device)
        cuda_layer.cudart = None
        yield device
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        cuda_layer.cudart = saved_cudart
