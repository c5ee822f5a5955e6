"""Backends: how a stage's ONNX file becomes an engine file, and how that file is loaded.

A registry (a table, like the model's methods and gates) maps a target's ``backend`` name to a
factory, so the builder and the runtime never branch on backend names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from edgemoe.core.engine import Engine, TensorSpec
from edgemoe.core.errors import ConfigError
from edgemoe.engines.target import TargetProfile


class Backend(Protocol):
    name: str
    # whether it builds graphs with data-dependent shapes (a fused graph's routed experts:
    # NonZero, gather/scatter by the in-graph top-k)
    routed_graphs: bool
    # the precisions whose graphs it builds (core.manifest.PRECISIONS, or fewer)
    precisions: tuple[str, ...]

    def environment(self, target: TargetProfile) -> dict[str, Any]:
        """Versions and device facts recorded in the engine manifest at build time."""
        ...

    def check_environment(self, recorded: Mapping[str, Any], target: TargetProfile) -> None:
        """Refuse to load engines built for another runtime version or device."""
        ...

    def build_stage(self, stage: str, source: Path, precision: str, inputs: tuple[TensorSpec, ...],
                    outputs: tuple[TensorSpec, ...], max_dims: Mapping[str, int], target: TargetProfile,
                    out: Path) -> dict[str, Any]:
        """Write the engine file ``out`` and return extra manifest fields for it."""
        ...

    def load_stage(self, stage: str, path: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                   max_dims: Mapping[str, int], target: TargetProfile) -> Engine:
        ...

    engine_suffix: str


def _onnxruntime() -> Backend:
    from edgemoe.engines.onnxruntime.backend import OrtBackend

    return OrtBackend()


def _tensorrt() -> Backend:
    # TensorRT itself is imported only when the backend is used, so this works without it
    from edgemoe.engines.tensorrt.backend import TensorRTBackend

    return TensorRTBackend()


# backend name -> factory; each backend's modules are imported only when it is asked for, so this
# module imports no backend (and no backend needs to import it to be found)
BACKENDS: dict[str, Callable[[], Backend]] = {
    "onnxruntime": _onnxruntime,
    "tensorrt": _tensorrt,
}


def register(name: str) -> Callable[[Callable[[], Backend]], Callable[[], Backend]]:
    """Add an out-of-tree backend under ``name`` (the built-ins are listed in :data:`BACKENDS`)."""
    def wrap(factory: Callable[[], Backend]) -> Callable[[], Backend]:
        BACKENDS.setdefault(name, factory)
        return factory
    return wrap


def get_backend(name: str) -> Backend:
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"key 'backend': unknown backend '{name}' (known: {sorted(BACKENDS)})") from None
    return factory()
