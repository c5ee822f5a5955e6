"""The one way an engine comes into being: a loader made from one manifest entry.

Shaped after Polygraphy's loaders: :class:`EngineLoader` is a plain zero-argument callable that
holds everything needed to load one engine (the bundle directory, the entry with its file,
sha256 and tensors, the dims, the backend and the target) and does the expensive part only when
called: it checks the file against its sha256, then asks the backend's ``load_stage``. The
runtime loads a bundle by calling one loader per stage, the profiler calls one again to measure
what a second copy costs, and calibration makes loaders for every precision variant of a model
bundle; none of them opens a file or a session any other way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgemoe.core.bundle import verify_file
from edgemoe.core.engine import Engine, TensorSpec
from edgemoe.core.manifest import FileRef
from edgemoe.engines.backend import Backend
from edgemoe.engines.target import TargetProfile


class StageFile(Protocol):
    """What a loader needs from a manifest entry: the file, its sha256 and the stage's tensors."""

    @property
    def file(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...


@dataclass(frozen=True)
class EngineLoader:
    """``loader()`` -> the engine of ``stage``, its file checked against the manifest's sha256.

    ``file`` is the entry's file reference and ``inputs``/``outputs`` its tensors (a model
    bundle keeps them per stage, the variants per precision; an engine entry carries both).
    The engines of one bundle share one ``backend`` instance (TensorRT shares its stream and
    scratch memory between them). Not warmed: the caller decides when."""

    directory: Path
    stage: str
    file: FileRef
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: Mapping[str, int]
    backend: Backend
    target: TargetProfile
    fix: str  # what to do when the file is missing or does not match

    @classmethod
    def of(cls, directory: Path, stage: str, entry: StageFile, dims: Mapping[str, int], backend: Backend,
           target: TargetProfile, fix: str) -> EngineLoader:
        """The loader of an entry that carries its file and its tensors (an engine entry)."""
        ref = FileRef(file=entry.file, sha256=entry.sha256)
        return cls(Path(directory), stage, ref, entry.inputs, entry.outputs, dims, backend, target, fix)

    def __call__(self) -> Engine:
        path = verify_file(self.directory, self.file, f"engine '{self.stage}'", self.fix)
        return self.backend.load_stage(self.stage, path, self.inputs, self.outputs, self.dims, self.target)

    @property
    def path(self) -> Path:
        return self.directory / self.file.file
