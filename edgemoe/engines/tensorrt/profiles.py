"""What to ask TensorRT for, computed without TensorRT: shapes, precision, placement.

Kept apart from the builder so the choices are tested on machines without a GPU: the
optimisation profile of every dynamic dim, which stages are static (one padded shape, DLA and
CUDA-graph capable), and which network/builder flags a precision needs on each TensorRT version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgemoe.core.engine import TensorSpec
from edgemoe.core.errors import ConfigError
from edgemoe.engines.target import TrtOptions, stage_matches

Shape = tuple[int, ...]
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ShapeRange:
    """One input's optimisation profile: the shapes TensorRT tunes for and accepts."""

    min: Shape
    opt: Shape
    max: Shape

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @property
    def static(self) -> bool:
        return self.min == self.max


def is_static(stage: str, options: TrtOptions) -> bool:
    return stage_matches(stage, options.static_stages)


def on_dla(stage: str, options: TrtOptions, precision: str = "fp16") -> bool:
    """DLA takes only static fp16/int8 stages; ``dla_stages`` narrows which (default: every static one)."""
    if options.dla_core is None or not is_static(stage, options) or precision == "fp32":
        return False
    return not options.dla_stages or stage_matches(stage, options.dla_stages)


def dla_skipped(stage: str, options: TrtOptions, precision: str) -> str | None:
    """Why a stage the profile sends to the DLA stays on the GPU (the DLA has no fp32)."""
    if on_dla(stage, options) and not on_dla(stage, options, precision):
        return f"{precision} has no DLA implementation; calibrate the stage to fp16/int8 to use the DLA"
    return None


def shape_ranges(stage: str, inputs: Sequence[TensorSpec], max_dims: Mapping[str, int],
                 options: TrtOptions) -> dict[str, ShapeRange]:
    """min/opt/max per input: every symbol spans 1 … its maximum, opt from the target profile.

    A static stage gets min = opt = max = the maximum; that is only exact when the sole dynamic dim
    is the leading one (rows padded at run time are independent of the real rows).

    ``tensorrt.opt`` names dims of the model's staged engines; a stage without dynamic dims (a fused
    hot-mask engine, batch 1) has nothing to tune, so the profile's opt does not apply to it.
    """
    static = is_static(stage, options)
    if any(isinstance(d, str) for spec in inputs for d in spec.shape):
        unknown = sorted(set(options.opt) - set(max_dims))
        if unknown:
            raise ConfigError(f"key 'tensorrt.opt': unknown dim(s) {unknown} (dims are {sorted(max_dims)})")
    ranges = {}
    for spec in inputs:
        symbols = [d for d in spec.shape if isinstance(d, str)]
        missing = [d for d in symbols if d not in max_dims]
        if missing:
            raise ConfigError(f"stage '{stage}' input '{spec.name}': dim(s) {missing} have no maximum "
                              f"(max_dims has {sorted(max_dims)}); re-export the bundle")
        if static and any(isinstance(d, str) for d in spec.shape[1:]):
            raise ConfigError(f"key 'tensorrt.static_stages': stage '{stage}' input '{spec.name}' "
                              f"{list(spec.shape)} has a dynamic dim after the first; it cannot be padded, "
                              "remove it from static_stages")
        ranges[spec.name] = ShapeRange(
            _pick(spec, lambda d: max_dims[d] if static else 1),
            _pick(spec, lambda d: max_dims[d] if static else _opt(d, options, max_dims, stage)),
            _pick(spec, lambda d: max_dims[d]),
        )
    return ranges


def _opt(dim: str, options: TrtOptions, max_dims: Mapping[str, int], stage: str) -> int:
    value = options.opt.get(dim, max_dims[dim])
    if not 1 <= value <= max_dims[dim]:
        raise ConfigError(f"key 'tensorrt.opt.{dim}': {value} is outside 1..{max_dims[dim]} "
                          f"(the maximum of '{dim}' for stage '{stage}')")
    return value


def _pick(spec: TensorSpec, size: object) -> Shape:
    assert callable(size)
    return tuple(d if isinstance(d, int) else int(size(d)) for d in spec.shape)


def uses_strong_typing(trt_major: int, options: TrtOptions) -> bool:
    """TensorRT >= 10 builds strongly typed unless the profile opts out; 8.x cannot."""
    return trt_major >= 10 and options.strongly_typed


def precision_flags(precision: str, trt_major: int, strongly_typed: bool) -> tuple[str, ...]:
    """``BuilderFlag`` names for a weakly typed build; none for a strongly typed one.

    Strongly typed networks take every type from the graph (Q/DQ nodes, fp16 initialisers) and
    reject precision flags. A weakly typed int8 Q/DQ graph still needs INT8 (and FP16 so the
    layers between Q/DQ pairs may run in half). TensorRT 11 removed the flags altogether.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is not one of {list(PRECISIONS)}")
    if strongly_typed:
        return ()
    if trt_major >= 11:
        raise ConfigError(f"TensorRT {trt_major} has no precision flags: set 'tensorrt.strongly_typed: true'")
    return {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]


def dla_flags(stage: str, options: TrtOptions, precision: str = "fp16") -> tuple[str, ...]:
    return ("GPU_FALLBACK",) if on_dla(stage, options, precision) and options.gpu_fallback else ()


def graph_refusal(stage: str, options: TrtOptions) -> str | None:
    """Why ``stage`` is not captured into a CUDA graph at warm-up, or None when it is.

    TensorRT cannot capture an engine that runs on a DLA (NVIDIA/TensorRT#3524). Loading knows the
    stage but not the precision it was built at, so every stage the profile sends to the DLA counts
    as a DLA engine, also an fp32 one that stayed on the GPU; the build records the same answer.
    """
    if not options.cuda_graphs:
        return "cuda_graphs is off in the target profile"
    if not is_static(stage, options):
        return "dynamic shapes: only static stages are captured"
    if on_dla(stage, options):
        return f"placed on DLA core {options.dla_core}: TensorRT cannot capture DLA engines in a CUDA graph"
    return None
