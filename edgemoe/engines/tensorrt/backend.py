"""The ``tensorrt`` backend: builds and loads ``.engine`` files; imports TensorRT only when used.

Importing this module needs neither TensorRT nor a GPU, so ``edgemoe`` always knows the backend
exists; building or loading without them fails with an :class:`EngineError` saying what to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgemoe.core.engine import Engine, TensorSpec
from edgemoe.engines.backend import register
from edgemoe.engines.target import TargetProfile
from edgemoe.engines.tensorrt.detect import jetson_module, load_cudart, load_tensorrt
from edgemoe.engines.tensorrt.manifest import (
    L4T_RELEASE, check_environment, cuda_version_string, jetpack_for, parse_l4t_release,
)
from edgemoe.engines.tensorrt.profiles import PRECISIONS, is_static

if TYPE_CHECKING:
    from edgemoe.engines.tensorrt.engine import DeviceSession


def _require() -> None:
    """Fail early and clearly when TensorRT or cuda-python is missing."""
    load_tensorrt()
    load_cudart()


def current_environment() -> dict[str, Any]:
    """Versions and device facts of this machine (needs TensorRT and a GPU)."""
    trt = load_tensorrt()
    from edgemoe.engines.tensorrt.cuda import device_facts

    facts = device_facts()
    l4t = parse_l4t_release(L4T_RELEASE.read_text()) if L4T_RELEASE.is_file() else None
    return {
        "tensorrt": trt.__version__,
        "cuda_runtime": cuda_version_string(facts.runtime_version),
        "cuda_driver": cuda_version_string(facts.driver_version),
        "gpu": facts.name,
        "compute_capability": facts.compute_capability,
        "integrated_gpu": facts.integrated,
        "gpu_memory_bytes": facts.total_memory,
        "sm_count": facts.multiprocessor_count,
        "module": jetson_module(),
        "l4t": l4t,
        "jetpack": jetpack_for(l4t),
    }


def timing_cache_path(out: Path, target: TargetProfile) -> Path | None:
    """``out`` is ``<parent>/.<bundle>.tmp/<engine>``: the cache lives in ``<parent>``, beside the bundle,
    so it survives rebuilds (``--force`` replaces the bundle directory) and serves every bundle
    built on this device."""
    name = target.tensorrt.timing_cache
    return None if name is None else out.resolve().parent.parent / name


@register("tensorrt")
class TensorRTBackend:
    name = "tensorrt"
    engine_suffix = ".engine"
    # fused engines are static stages replayed as CUDA graphs (docs/tensorrt.md), which routed
    # experts' data-dependent shapes rule out: fused graphs for TensorRT have dense experts
    routed_graphs = False
    # int8-dynamic graphs hold MatMulInteger, which TensorRT's ONNX parser does not take
    precisions: tuple[str, ...] = PRECISIONS

    def __init__(self) -> None:
        self._session: DeviceSession | None = None  # created by the first load_stage

    def environment(self, target: TargetProfile) -> dict[str, Any]:
        _require()
        return current_environment()

    def check_environment(self, recorded: Mapping[str, Any], target: TargetProfile) -> None:
        _require()
        check_environment(recorded, current_environment())

    def build_stage(self, stage: str, source: Path, precision: str, inputs: tuple[TensorSpec, ...],
                    outputs: tuple[TensorSpec, ...], max_dims: Mapping[str, int], target: TargetProfile,
                    out: Path) -> dict[str, Any]:
        _require()
        from edgemoe.engines.tensorrt.builder import build_engine

        return build_engine(stage, source, precision, inputs, max_dims, target.tensorrt, out,
                            timing_cache_path(out, target))

    def load_stage(self, stage: str, path: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                   max_dims: Mapping[str, int], target: TargetProfile) -> Engine:
        _require()
        from edgemoe.engines.tensorrt.engine import DeviceSession, TrtEngine

        if self._session is None:
            self._session = DeviceSession(target.tensorrt)
        return TrtEngine(stage, path.read_bytes(), inputs, outputs, max_dims, target.tensorrt, self._session,
                         static=is_static(stage, target.tensorrt))
