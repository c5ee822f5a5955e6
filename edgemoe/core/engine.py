"""The engine protocol: the one small interface every backend offers the executor.

Shaped after Polygraphy's runners: tensors are named, buffers belong to the engine (so a GPU
backend can keep pinned host and device memory that it allocated once), and a run is split into
``launch`` (enqueue) and ``wait`` (synchronise, hand back outputs) so a backend with streams can
overlap work. The executor never knows which backend it drives.

Dynamic dimensions are symbolic names (``"batch"``, ``"tokens"``). An engine is created with the
maximum size of each symbol, allocates its buffers once at that size, and resolves an output's
shape from the sizes its inputs bound to each symbol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edgemoe.core.errors import EngineError

Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: shape with symbolic dynamic dims, numpy dtype name."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TensorSpec:
        shape = data["shape"]
        assert isinstance(shape, list)
        return cls(str(data["name"]), tuple(shape), str(data.get("dtype", "float32")))

    def max_shape(self, max_dims: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else max_dims[d] for d in self.shape)

    def bind(self, shape: Sequence[int], symbols: dict[str, int], stage: str) -> None:
        """Check ``shape`` against this spec, recording the size of each symbol."""
        if len(shape) != len(self.shape):
            raise EngineError(
                f"stage '{stage}' input '{self.name}': expected rank {len(self.shape)} "
                f"{list(self.shape)}, got shape {list(shape)}"
            )
        for want, got in zip(self.shape, shape):
            if isinstance(want, int):
                if want != got:
                    raise EngineError(
                        f"stage '{stage}' input '{self.name}': expected {list(self.shape)}, "
                        f"got {list(shape)}"
                    )
            elif symbols.setdefault(want, got) != got:
                raise EngineError(
                    f"stage '{stage}' input '{self.name}': dim '{want}' is {got} here but "
                    f"{symbols[want]} in another input"
                )

    def resolve(self, symbols: Mapping[str, int], stage: str) -> tuple[int, ...]:
        try:
            return tuple(d if isinstance(d, int) else symbols[d] for d in self.shape)
        except KeyError as exc:
            raise EngineError(
                f"stage '{stage}' output '{self.name}': dim {exc} is not bound by any input"
            ) from None


@runtime_checkable
class Engine(Protocol):
    """One compiled stage. ``input`` hands out engine-owned buffers; outputs are engine-owned
    views, valid until the next ``launch``."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str, shape: Sequence[int]) -> np.ndarray:
        """Return the engine's host buffer for input ``name`` viewed at ``shape``; write into it."""
        ...

    def launch(self) -> None:
        """Enqueue a run over the inputs bound by the latest ``input`` calls."""
        ...

    def wait(self) -> Mapping[str, np.ndarray]:
        """Block until the launched run finishes; return output views."""
        ...

    def warmup(self) -> None:
        """Run once at every profile extreme so the first real frame pays no lazy setup."""
        ...

    def close(self) -> None: ...


def run_engine(engine: Engine, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copy ``feeds`` into the engine, run it, and return copies of its outputs.

    Convenience for tests, calibration and parity checks; the executor's hot path writes into
    ``engine.input`` buffers directly instead.
    """
    for spec in engine.inputs:
        if spec.name not in feeds:
            raise EngineError(f"stage '{engine.name}': missing input '{spec.name}'")
        value = feeds[spec.name]
        np.copyto(engine.input(spec.name, value.shape), value, casting="same_kind")
    engine.launch()
    return {k: np.array(v) for k, v in engine.wait().items()}


def bind_inputs(
    specs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]], stage: str
) -> dict[str, int]:
    """Check every bound input shape and return the symbol sizes they imply."""
    symbols: dict[str, int] = {}
    for spec in specs:
        if spec.name not in shapes:
            raise EngineError(f"stage '{stage}': input '{spec.name}' was not bound before launch")
        spec.bind(shapes[spec.name], symbols, stage)
    return symbols


def warmup_shapes(specs: Sequence[TensorSpec], max_dims: Mapping[str, int]) -> list[dict[str, tuple[int, ...]]]:
    """Input shapes at the smallest and largest size of every symbol."""
    shapes = []
    for pick in (lambda s: 1, lambda s: max_dims[s]):
        shapes.append(
            {spec.name: tuple(d if isinstance(d, int) else pick(d) for d in spec.shape) for spec in specs}
        )
    return shapes
