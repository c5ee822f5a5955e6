"""The stage table: every kind of stage a model is cut into, and the tensors each reads and writes.

The model's ``stage_modules``, the exporter, the engine builder, calibration and the executor name
stages, tensors and dynamic dims only through this module, so the two sides of the ONNX boundary
cannot drift apart. One :class:`StageKind` per row of :data:`STAGES`, in execution order; a row
says what a stage is indexed by (one per sensor, one per expert, or one), which layouts have it,
and its tensors as shape templates over the layout. A new kind of stage (e.g. a ``fusion`` stage,
masked self-attention over the present sensors' tokens) is one more row, plus the executor code
that runs it.

Shapes mix three kinds of entries: fixed ints, :class:`Size` (a size read from the
:class:`StageLayout`, or the sensor's frame shape spliced in) and dynamic dims (strings, named in
the ONNX graphs and sized by :func:`max_dims`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Literal, NamedTuple

from edgemoe.core.engine import TensorSpec
from edgemoe.core.errors import BundleError

# How a missing sensor's tokens are provided.
#  drop     - no tokens (equivalent to zero tokens excluded from the masked mean pool)
#  constant - a stored tensor per sensor (zero-fill, prototype or learned bank), shipped in the bundle
#  imputer  - an ``imputer[m]`` stage refines the stored tensor from the present sensors' tokens
#             (with the slots readout: from their expert outputs, after the experts)
Filler = Literal["drop", "constant", "imputer"]
# Mixing weight of a routed expert: softmax over the top-k gate scores, or the expert's own
# confidence output (decoupled confidence gating).
Mixing = Literal["softmax", "confidence"]
# Unit that the gate scores: each token, or each sample's pooled tokens.
RouteBy = Literal["token", "sample"]
# What the head reads: the mean of every token that counts (``[B, D]``), or one slot per sensor,
# the mean of that sensor's tokens, concatenated in sensor order (``[B, M*D]``). With slots a
# missing sensor's slot is zero, its filler tokens' mean, or (filler ``imputer``) imputed after the
# experts from the present sensors' expert outputs (Conf-SMoE's public design).
Readout = Literal["mean", "slots"]


@dataclass(frozen=True)
class StageLayout:
    """Everything the executor needs to know about a model's stages, and nothing about torch."""

    sensors: tuple[str, ...]
    tokens_per_sensor: int
    dim: int
    num_experts: int
    top_k: int
    num_classes: int
    filler: Filler = "drop"
    mixing: Mixing = "softmax"
    route_by: RouteBy = "token"
    fusion: bool = False  # a cross-sensor ``fusion`` stage runs between the fillers and the gate
    fusion_messages: bool = False  # the fusion stage sends sensor messages: it reads ``token_sensors``
    readout: Readout = "mean"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> StageLayout:
        try:
            values = dict(data)
            values["sensors"] = tuple(values["sensors"])  # type: ignore[arg-type]
            return cls(**values)  # type: ignore[arg-type]
        except (KeyError, TypeError) as exc:
            raise BundleError(f"manifest 'layout' is malformed: {exc}") from None

    @property
    def num_sensors(self) -> int:
        return len(self.sensors)

    @property
    def readout_width(self) -> int:
        """Width of the head's input: one token, or one slot per sensor."""
        return self.dim * (self.num_sensors if self.readout == "slots" else 1)

    @property
    def imputes_after_experts(self) -> bool:
        """The imputers run after the experts, on the present sensors' expert outputs, and fill
        the missing sensors' readout slots; the tokens before the experts are the present ones."""
        return self.filler == "imputer" and self.readout == "slots"

    def stage_names(self) -> list[str]:
        """Every stage of the model, in execution order."""
        return [kind.stage(key) for kind in kinds_of(self) for key in kind.keys(self)]

    def max_dims(self, max_batch: int) -> dict[str, int]:
        """Largest size of each dynamic dim the layout's stages use, for buffers and profiles."""
        return max_dims(self, max_batch)


# -- tensor names ------------------------------------------------------------------------------
FRAME = "frame"  # a sensor's raw frame, the encoder's input
TOKENS = "tokens"  # token vectors: an encoder's/imputer's output, the gate's and each expert's input
CONTEXT = "context"  # the present sensors' tokens, an imputer's input
MIXED = "mixed"  # the fusion stage's output tokens (an ONNX graph's tensor names are unique)
TOKEN_SENSORS = "token_sensors"  # which sensor each token of a sample belongs to, one-hot [B, T, M]
SCORES = "scores"  # the gate's expert scores
DELTA = "delta"  # an expert's residual output
CONFIDENCE = "confidence"  # an expert's own mixing weight (confidence mixing)
POOLED = "pooled"  # a sample's mean token (or its per-sensor slots): the head's (and a per-sample gate's) input
PROBS = "probs"  # class probabilities, the head's output

# -- dynamic dims ------------------------------------------------------------------------------
BATCH = "batch"  # samples in a call
TOKEN_ROWS = "tokens"  # rows of a [tokens, dim] matrix: a batch's tokens, or those routed to an expert
CONTEXT_TOKENS = "context"  # tokens of the present sensors an imputer reads
SEQUENCE = "sequence"  # tokens of one sample under a mask: what the fusion stage attends over


class Size(Enum):
    """A static size read from the layout (or, for ``FRAME``, the sensor's frame shape)."""

    DIM = "dim"
    SENSORS = "num_sensors"
    SENSOR_TOKENS = "tokens_per_sensor"
    EXPERTS = "num_experts"
    CLASSES = "num_classes"
    READOUT = "readout_width"
    FRAME = "frame"


Entry = int | str | Size


@dataclass(frozen=True)
class Tensor:
    """A tensor template of the table: name, shape template, and the layouts that have it."""

    name: str
    shape: tuple[Entry, ...]
    when: Callable[[StageLayout], bool] = lambda layout: True

    def spec(self, layout: StageLayout, frame: Sequence[int] = ()) -> TensorSpec:
        shape: list[int | str] = []
        for entry in self.shape:
            if entry is Size.FRAME:
                shape += frame
            elif isinstance(entry, Size):
                shape.append(getattr(layout, entry.value))
            else:
                shape.append(entry)
        return TensorSpec(self.name, tuple(shape))


@dataclass(frozen=True)
class StageKind:
    """One row of the stage table."""

    name: str
    per: Literal["sensor", "expert", "one"]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    when: Callable[[StageLayout], bool] = lambda layout: True

    def stage(self, key: str | int | None = None) -> str:
        """The stage name: ``encoder[camera]``, ``expert[3]``, ``gate``."""
        return self.name if self.per == "one" else f"{self.name}[{key}]"

    def keys(self, layout: StageLayout) -> Sequence[str | int | None]:
        if self.per == "sensor":
            return layout.sensors
        return range(layout.num_experts) if self.per == "expert" else (None,)

    def tensors(self, layout: StageLayout, frame: Sequence[int] = ()) -> StageTensors:
        pick = lambda ts: tuple(t.spec(layout, frame) for t in ts if t.when(layout))  # noqa: E731
        return StageTensors(pick(self.inputs), pick(self.outputs))


class StageTensors(NamedTuple):
    """A stage's named, symbolic-shaped inputs and outputs (unpacks as ``inputs, outputs``)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


_token_rows = Tensor(TOKENS, (TOKEN_ROWS, Size.DIM))
_sensor_tokens = Tensor(TOKENS, (BATCH, Size.SENSOR_TOKENS, Size.DIM))
_pooled = Tensor(POOLED, (BATCH, Size.DIM))

ENCODER = StageKind("encoder", "sensor", (Tensor(FRAME, (BATCH, Size.FRAME)),), (_sensor_tokens,))
_context = Tensor(CONTEXT, (BATCH, CONTEXT_TOKENS, Size.DIM))
IMPUTER = StageKind("imputer", "sensor", (_context,), (_sensor_tokens,),
                    when=lambda layout: layout.filler == "imputer" and not layout.imputes_after_experts)
# the same stage, run after the experts: its context is the present sensors' expert outputs
LATE_IMPUTER = StageKind("imputer", "sensor", (_context,), (_sensor_tokens,),
                         when=lambda layout: layout.imputes_after_experts)
_sequence = Tensor(TOKENS, (BATCH, SEQUENCE, Size.DIM))
# per sample (not one [T, M] for the batch): calibration sets stack every input's rows on axis 0
_token_sensors = Tensor(TOKEN_SENSORS, (BATCH, SEQUENCE, Size.SENSORS), when=lambda layout: layout.fusion_messages)
FUSION_KIND = StageKind("fusion", "one", (_sequence, _token_sensors), (Tensor(MIXED, (BATCH, SEQUENCE, Size.DIM)),),
                        when=lambda layout: layout.fusion)
TOKEN_GATE = StageKind("gate", "one", (_token_rows,), (Tensor(SCORES, (TOKEN_ROWS, Size.EXPERTS)),),
                       when=lambda layout: layout.route_by == "token")
SAMPLE_GATE = StageKind("gate", "one", (_pooled,), (Tensor(SCORES, (BATCH, Size.EXPERTS)),),
                        when=lambda layout: layout.route_by == "sample")
EXPERT = StageKind("expert", "expert", (_token_rows,), (
    Tensor(DELTA, (TOKEN_ROWS, Size.DIM)),
    Tensor(CONFIDENCE, (TOKEN_ROWS, 1), when=lambda layout: layout.mixing == "confidence"),
))
HEAD_KIND = StageKind("head", "one", (Tensor(POOLED, (BATCH, Size.READOUT)),), (Tensor(PROBS, (BATCH, Size.CLASSES)),))

# The table, in execution order.
STAGES: tuple[StageKind, ...] = (ENCODER, IMPUTER, FUSION_KIND, TOKEN_GATE, SAMPLE_GATE, EXPERT, LATE_IMPUTER,
                                 HEAD_KIND)

FUSION = FUSION_KIND.stage()
GATE = TOKEN_GATE.stage()
HEAD = HEAD_KIND.stage()

# Largest size of each dynamic dim, from the layout and the largest batch.
_MAX_SIZE: dict[str, Callable[[StageLayout, int], int]] = {
    BATCH: lambda layout, batch: batch,
    TOKEN_ROWS: lambda layout, batch: batch * layout.num_sensors * layout.tokens_per_sensor,
    # an imputer sees the present sensors' tokens: at most every other sensor's
    CONTEXT_TOKENS: lambda layout, batch: max(1, (layout.num_sensors - 1) * layout.tokens_per_sensor),
    SEQUENCE: lambda layout, batch: layout.num_sensors * layout.tokens_per_sensor,
}


def kinds_of(layout: StageLayout) -> tuple[StageKind, ...]:
    """The rows of the table this layout has, in execution order."""
    return tuple(kind for kind in STAGES if kind.when(layout))


def encoder_stage(sensor: str) -> str:
    return ENCODER.stage(sensor)


def imputer_stage(sensor: str) -> str:
    return IMPUTER.stage(sensor)


def expert_stage(index: int) -> str:
    return EXPERT.stage(index)


def stage_kind(stage: str) -> str:
    """``expert[3]`` -> ``expert``; ``gate`` -> ``gate``."""
    return stage.split("[", 1)[0]


def stage_key(stage: str) -> str | None:
    """``expert[3]`` -> ``3``; ``gate`` -> None."""
    return stage[stage.index("[") + 1 : -1] if "[" in stage else None


def stage_file_stem(stage: str) -> str:
    """``expert[3]`` -> ``expert_3`` for file names."""
    return stage.replace("[", "_").replace("]", "")


def stage_tensors(layout: StageLayout, frames: Mapping[str, Sequence[int]]) -> dict[str, StageTensors]:
    """Every stage of ``layout`` with its tensors, in execution order; ``frames`` maps each sensor
    to its frame shape (no batch dim)."""
    out = {}
    for kind in kinds_of(layout):
        for key in kind.keys(layout):
            frame = frames[key] if kind.per == "sensor" else ()  # type: ignore[index]
            out[kind.stage(key)] = kind.tensors(layout, frame)
    return out


def max_dims(layout: StageLayout, max_batch: int) -> dict[str, int]:
    """Largest size of each dynamic dim the layout's stages use, for buffers and profiles."""
    used = {d for kind in kinds_of(layout) for t in (*kind.inputs, *kind.outputs) if t.when(layout)
            for d in t.shape if isinstance(d, str)}
    return {dim: size(layout, max_batch) for dim, size in _MAX_SIZE.items() if dim in used}


# -- fused engines: one mask's whole forward as one batch-1 graph ------------------------------
FUSED = "fused"
FUSED_DIMS = {BATCH: 1}  # fused engines serve single frames; batches take the staged plan


def fused_stage(mask: int) -> str:
    """The stage name of a mask's fused engine: ``fused[5]``."""
    return f"{FUSED}[{mask}]"


def fused_tensors(layout: StageLayout, frames: Mapping[str, Sequence[int]], present: Sequence[str]) -> StageTensors:
    """A fused engine's tensors: one batch-1 input per present sensor, named as the sensor, and
    the class probabilities."""
    batch = FUSED_DIMS[BATCH]
    return StageTensors(tuple(TensorSpec(name, (batch, *frames[name])) for name in present),
                        (TensorSpec(PROBS, (batch, layout.num_classes)),))
