"""Backends: how a stage's ONNX file becomes an engine file, and how that file is loaded.

A registry maps a target's ``backend`` name to an implementation, so the builder and the runtime
never branch on backend names (the TensorRT backend registers itself the same way).
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


BACKENDS: dict[str, Callable[[], Backend]] = {}


def register(name: str) -> Callable[[Callable[[], Backend]], Callable[[], Backend]]:
    def wrap(factory: Callable[[], Backend]) -> Callable[[], Backend]:
        BACKENDS[name] = factory
        return factory
    return wrap


def get_backend(name: str) -> Backend:
    _import_builtin_backends()
    try:
        return BACKENDS[name]()
    except KeyError:
        raise ConfigError(f"key 'backend': unknown backend '{name}' (known: {sorted(BACKENDS)})") from None


def _import_builtin_backends() -> None:
    import edgemoe.engines.ort_backend  # noqa: F401  (registers "onnxruntime")
    try:
        import edgemoe.engines.tensorrt  # noqa: F401  (registers "tensorrt" when present)
    except ImportError:
        pass
