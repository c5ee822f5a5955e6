"""Target profiles: ``engines/<name>.yaml`` says how to build a bundle for one kind of device."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from edgemoe.core.config import StrictModel, load_yaml_as, validate_as
from edgemoe.core.errors import ConfigError
from edgemoe.packaged import TARGETS

Precision = Literal["auto", "fp32", "fp16", "int8", "int8-dynamic"]  # "auto" or core.manifest.PRECISIONS


class OrtOptions(StrictModel):
    """ONNX Runtime session settings. Providers are asked for in order; the build records the
    ones actually granted, since ONNX Runtime silently falls back to the CPU."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = Field(1, ge=0)
    # thread budget of the runtime: how many stage sessions may run at once (the encoders of a
    # frame's sensors, its chosen experts); 1 runs every stage on the calling thread
    threads: int = Field(1, ge=1)
    # one session's threads across independent branches of its graph (ORT_PARALLEL above 1): how
    # a single whole-model session spends a budget; stage sessions keep 1 and use ``threads``
    inter_op_threads: int = Field(1, ge=1)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    require_providers: bool = False  # refuse to build/load when a requested provider is missing
    # per-stage intra-op threads, by shell pattern (first match wins; ``encoder*``): a stage whose
    # convolutions take most of a frame (a camera encoder) runs ~1.8x faster on 2 threads, while a
    # 10 us projection runs slower on 2 (the thread hand-off costs more than it saves)
    stage_intra_op_threads: dict[str, int] = Field(default_factory=dict)

    def for_stage(self, stage: str) -> OrtOptions:
        """These options with the intra-op threads ``stage_intra_op_threads`` gives ``stage``."""
        for pattern, threads in self.stage_intra_op_threads.items():
            if stage_matches(stage, (pattern,)):
                return self.model_copy(update={"intra_op_threads": threads})
        return self

    @field_validator("stage_intra_op_threads")
    @classmethod
    def _threads_at_least_one(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {p: n for p, n in value.items() if n < 1}
        if bad:
            raise ValueError(f"intra-op threads must be at least 1, got {bad}")
        return value


def stage_matches(stage: str, patterns: Sequence[str]) -> bool:
    """Shell-pattern match of a stage name (``encoder*``), literal brackets allowed."""
    return any(stage == p or fnmatch.fnmatchcase(stage, p) for p in patterns)


class TrtOptions(StrictModel):
    """TensorRT build and run settings (``tensorrt:`` block of a target profile).

    Stage names are matched with shell patterns (``expert[*]`` needs ``expert[[]*]``; use
    ``expert*``). A *static* stage is built for one shape, the profile maximum, and padded to it at
    run time: that is what DLA and CUDA-graph capture need. Padding is exact for our stages because
    every dynamic dim is the leading one and rows are independent (per sample or per token).
    """

    workspace_mb: int = Field(1024, ge=16)  # builder scratch limit (MemoryPoolType.WORKSPACE)
    strongly_typed: bool = True  # TensorRT >= 10: types come from the Q/DQ / fp16 ONNX; 8.6 uses flags
    builder_optimization_level: int = Field(3, ge=0, le=5)
    opt: dict[str, int] = Field(default_factory=dict)  # optimisation-profile opt size per dim symbol; default: the maximum
    timing_cache: str | None = "timing.cache"  # beside the engine bundle, reused by later builds
    static_stages: tuple[str, ...] = ()  # shell patterns of stages built at one (maximum) shape
    dla_core: int | None = Field(None, ge=0)  # Orin: put static stages on this DLA core
    dla_stages: tuple[str, ...] = ()  # which static stages go to the DLA (default: all static ones)
    gpu_fallback: bool = True  # layers the DLA cannot run go to the GPU (and are reported)
    cuda_graphs: bool = False  # capture static stages into CUDA graphs at warm-up
    share_scratch: bool = True  # one scratch allocation for all engines (they never run concurrently)
    zero_copy: Literal["auto", "on", "off"] = "auto"  # mapped pinned memory on integrated GPUs (Jetson)
    stream_priority: Literal["high", "default"] = "high"  # the engines' stream outranks the process's other CUDA work
    sync: Literal["auto", "spin", "yield", "blocking"] = "auto"  # how the host waits for the GPU (cudaSetDeviceFlags)


class TargetProfile(StrictModel):
    name: str
    backend: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    precision: Precision = "fp32"
    max_batch: int = Field(8, ge=1)
    # masks whose fused engines this device gets, as ``edgemoe build --fuse`` takes them ("camera+imu",
    # "5", "all", "none", or the fused_choice.json ``edgemoe profile`` writes); None: every fused
    # graph the bundle carries. It overrides the profile's choice for one kind of device; ``--fuse``
    # on the command line overrides it in turn.
    fuse: tuple[str, ...] | None = None
    onnxruntime: OrtOptions = OrtOptions()
    tensorrt: TrtOptions = TrtOptions()


def known_targets() -> list[str]:
    """Names ``load_target`` accepts: the shipped profiles and any under ``./engines/``."""
    return TARGETS.names()


def load_target(name_or_path: str) -> TargetProfile:
    """``cpu`` -> ``engines/cpu.yaml`` (in the working directory, else shipped with the package);
    a path with a suffix is read as is."""
    if Path(name_or_path).suffix:
        return load_yaml_as(TargetProfile, Path(name_or_path), "target profile")
    found = TARGETS.find(name_or_path)
    if found is None:
        raise ConfigError(f"target profile '{name_or_path}' not found; known: {known_targets()} "
                          "(or give a YAML path)")
    with resources.as_file(found) as path:
        return load_yaml_as(TargetProfile, path, "target profile")


def with_build_overrides(target: TargetProfile, precision: str | None = None, workspace_mb: int | None = None,
                         dla_core: int | None = None) -> TargetProfile:
    """The profile with command-line build settings on top (None keeps the profile's value)."""
    data: dict[str, Any] = target.model_dump()
    if precision is not None:
        data["precision"] = precision
    trt = {k: v for k, v in (("workspace_mb", workspace_mb), ("dla_core", dla_core)) if v is not None}
    if trt and target.backend != "tensorrt":
        raise ConfigError(f"tensorrt.{'/'.join(trt)} set on the command line, but target '{target.name}' "
                          f"builds with {target.backend}, not TensorRT")
    data["tensorrt"].update(trt)
    return validate_as(TargetProfile, data, f"target profile '{target.name}' with command-line overrides")
