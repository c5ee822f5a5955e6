"""The manifests of the two bundles as typed, versioned models, validated once when read.

A model bundle (``edgemoe export``, extended by ``edgemoe calibrate``) and an engine bundle
(``edgemoe build``) are each a directory whose ``manifest.json`` lists every file by sha256; the
manifest itself is covered by an Ed25519 signature when the bundle is signed
(:mod:`edgemoe.core.signing`). Everything downstream reads these models, never raw JSON, so a
manifest with a wrong type or a missing key is refused at read with one line naming the file and
the key path, not later at inference.

The shape follows Triton's model config: small named records (:class:`FileRef`,
:class:`StageEntry`, :class:`EngineEntry`) inside one manifest per artifact. pydantic and numpy
only: the device side imports this.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgemoe.core.config import StrictModel, describe
from edgemoe.core.engine import TensorSpec
from edgemoe.core.errors import BundleError
from edgemoe.core.stages import StageLayout
from edgemoe.core.schema import ModelConfig

MANIFEST = "manifest.json"
MODEL_KIND = "edgemoe-bundle"
ENGINE_KIND = "edgemoe-engines"
MODEL_VERSION = 2  # 2: the checkpoint's sha256, typed manifests
ENGINE_VERSION = 2
MODEL_FORMAT: Literal["edgemoe-bundle/2"] = "edgemoe-bundle/2"  # f"{MODEL_KIND}/{MODEL_VERSION}"
ENGINE_FORMAT: Literal["edgemoe-engines/2"] = "edgemoe-engines/2"
# int8-dynamic: int8 weights, activations quantized per call (ONNX Runtime only; calibrate/dynamic.py)
PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")

Sha256 = str  # 64 lowercase hex digits, checked by FileRef
Precision = Literal["fp32", "fp16", "int8", "int8-dynamic"]  # PRECISIONS


class FileRef(StrictModel):
    """A file of the bundle, relative to its directory, and the sha256 of its bytes."""

    file: str
    sha256: Sha256 = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def _inside(cls, value: str) -> str:
        if not value or value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"'{value}' must be a relative path inside the bundle")
        return value


class Variant(FileRef):
    """One precision of a stage's ONNX graph and how it was made (calibration facts for int8/fp16/int8-dynamic)."""

    calibration: dict[str, Any] | None = None


class PrecisionChoice(StrictModel):
    """The precision ``edgemoe build --target`` with ``precision: auto`` takes for a stage, and why."""

    choice: Precision = "fp32"
    reason: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] | None = None


class StageEntry(StrictModel):
    """One stage of a model bundle: its tensors and the ONNX graph of every precision it has."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    variants: dict[str, Variant]  # precision -> graph
    precision: PrecisionChoice = PrecisionChoice()

    @field_validator("variants")
    @classmethod
    def _known_precisions(cls, value: dict[str, Variant]) -> dict[str, Variant]:
        unknown = sorted(set(value) - set(PRECISIONS))
        if unknown:
            raise ValueError(f"unknown precision(s) {unknown} (known: {list(PRECISIONS)})")
        if "fp32" not in value:
            raise ValueError("every stage needs its exported fp32 variant")
        return value


class FusedEntry(StageEntry):
    """A mask's whole forward as one batch-1 graph (a hot mask): the sensors it takes, in order,
    and the form of its experts: ``dense`` (every expert on every token, static shapes) or
    ``routed`` (each expert on the tokens routed to it: data-dependent shapes, which not every
    backend builds). ``form_us`` holds the export-time timing that chose it, when both were timed."""

    stage: str
    sensors: tuple[str, ...]
    experts: Literal["dense", "routed"] = "dense"
    form_us: dict[str, float] = Field(default_factory=dict)


class ExpectedAccuracy(StrictModel):
    """Per-mask accuracy the daemon attaches to each prediction."""

    split: str
    masks: dict[int, float]
    mean: dict[str, float] = Field(default_factory=dict)


class CheckpointRef(StrictModel):
    """The checkpoint a model bundle was exported from: its file name and sha256 (file bytes),
    and the content hash the checkpoint carries and checks on load."""

    file: str
    sha256: Sha256 = Field(pattern=r"^[0-9a-f]{64}$")
    content_sha256: Sha256 = Field(pattern=r"^[0-9a-f]{64}$")


class CalibrationSets(FileRef):
    content_sha256: Sha256


class CalibrationSummary(StrictModel):
    """What ``edgemoe calibrate`` did: recipe, sets, collection and validation (docs/calibration.md)."""

    created: str
    method: str
    recipe: dict[str, Any]
    sets: CalibrationSets
    collection: dict[str, Any]
    validation: dict[str, Any]


class _Manifest(StrictModel):
    """What both manifests share: the format (kind/version), the schema and stage layout."""

    format: str
    created: str
    config: ModelConfig
    layout: StageLayout
    max_dims: dict[str, int]
    constants: FileRef | None = None
    expected_accuracy: ExpectedAccuracy | None = None

    def expected_accuracy_of(self, mask: int) -> float | None:
        table = self.expected_accuracy
        return None if table is None else table.masks.get(mask)


class ModelManifest(_Manifest):
    """``manifest.json`` of a model bundle."""

    format: Literal["edgemoe-bundle/2"] = MODEL_FORMAT
    checkpoint: CheckpointRef
    opset: int
    exporter: str
    tools: dict[str, str]
    stages: dict[str, StageEntry]
    fused: dict[int, FusedEntry] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    calibration: CalibrationSummary | None = None


class EngineEntry(FileRef):
    """One built engine. Besides the declared fields it keeps the facts its backend recorded at
    build (``providers`` for ONNX Runtime; ``dla``, ``build_seconds``, ... for TensorRT): those
    belong to the backend and are read by it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    precision: Precision
    source_file: str
    source_sha256: Sha256
    source_opset: int
    calibration: dict[str, Any] | None = None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def fact(self, key: str, default: Any = None) -> Any:
        """A backend fact recorded at build (an undeclared field), or ``default``."""
        return (self.model_extra or {}).get(key, default)


class FusedEngineEntry(EngineEntry):
    stage: str
    sensors: tuple[str, ...]
    experts: Literal["dense", "routed"] = "dense"


class SourceBundle(StrictModel):
    """The model bundle an engine bundle was built from."""

    path: str
    manifest_sha256: Sha256
    checkpoint: CheckpointRef
    signed_by: str | None = None  # the key id that signed it, when build checked a signature


class EngineManifest(_Manifest):
    """``manifest.json`` of an engine bundle. ``target`` is the profile it was built for (validated
    by the engines' ``TargetProfile`` when loaded, a box to the right of this one) and
    ``environment`` what its backend recorded about the build machine."""

    format: Literal["edgemoe-engines/2"] = ENGINE_FORMAT
    target: dict[str, Any]
    backend: str
    environment: dict[str, Any] = Field(default_factory=dict)
    source_bundle: SourceBundle
    engines: dict[str, EngineEntry]
    fused: dict[int, FusedEngineEntry] = Field(default_factory=dict)

    @property
    def target_name(self) -> str:
        return str(self.target.get("name", "?"))


KINDS: dict[str, tuple[int, type[_Manifest], str]] = {
    MODEL_KIND: (MODEL_VERSION, ModelManifest, "re-export with 'edgemoe export CKPT --out BUNDLE'"),
    ENGINE_KIND: (ENGINE_VERSION, EngineManifest, "rebuild with 'edgemoe build BUNDLE --target PROFILE --out ENGINES'"),
}


def parse_manifest(data: Any, kind: str, source: str) -> _Manifest:
    """Check the format (kind and version) first, then validate the whole manifest: one line that
    names ``source`` and every offending key path."""
    version, cls, fix = KINDS[kind]
    found = data.get("format") if isinstance(data, dict) else None
    if not isinstance(found, str) or "/" not in found:
        raise BundleError(f"{source}: key 'format' is {found!r}, not '{kind}/<version>' (is this an {kind} directory?)")
    found_kind, _, found_version = found.partition("/")
    if found_kind != kind:
        raise BundleError(f"{source}: format '{found}' but '{kind}/{version}' expected")
    if found_version != str(version):
        raise BundleError(f"{source}: {kind} version {found_version} is not the version {version} this edgemoe "
                          f"reads; {fix}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise BundleError(f"{source}: {describe(exc)}; {fix}") from None


def dump_manifest(manifest: BaseModel) -> str:
    """The manifest as written to disk (JSON, indented, one trailing newline)."""
    return manifest.model_dump_json(indent=2) + "\n"
