"""The ONNX Runtime backend: the engine file is the stage's ONNX graph, checked by a test load."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from edgemoe.core.engine import Engine, TensorSpec
from edgemoe.core.errors import BundleError
from edgemoe.core.manifest import PRECISIONS
from edgemoe.engines.onnxruntime.cpu import FUSING_LEVELS, cpu_flags, int8_products_saturate
from edgemoe.engines.onnxruntime.engine import OrtEngine
from edgemoe.engines.onnxruntime.lanes import shared_lanes
from edgemoe.engines.target import TargetProfile

CPU = "CPUExecutionProvider"


def provider_report(requested: Sequence[str], granted: Sequence[str]) -> dict[str, Any]:
    """What was asked for and what ONNX Runtime actually gave: its CPU fallback is silent, the
    manifest (and ``edgemoe build``'s output) is not."""
    return {"providers": list(granted), "providers_requested": list(requested),
            "providers_missing": [p for p in requested if p not in granted]}


class OrtBackend:
    name = "onnxruntime"
    engine_suffix = ".onnx"
    routed_graphs = True
    precisions: tuple[str, ...] = PRECISIONS

    def environment(self, target: TargetProfile) -> dict[str, Any]:
        return {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers()}

    def check_environment(self, recorded: Mapping[str, Any], target: TargetProfile) -> None:
        wanted = target.onnxruntime.providers
        lacking = [p for p in wanted if p not in ort.get_available_providers()]
        if lacking and target.onnxruntime.require_providers:
            raise BundleError(f"engines were built for providers {list(wanted)} but this onnxruntime "
                              f"{ort.__version__} lacks {lacking}: install onnxruntime-gpu or rebuild "
                              "with 'edgemoe build ... --target cpu'")

    def build_stage(self, stage: str, source: Path, precision: str, inputs: tuple[TensorSpec, ...],
                    outputs: tuple[TensorSpec, ...], max_dims: Mapping[str, int], target: TargetProfile,
                    out: Path) -> dict[str, Any]:
        shutil.copyfile(source, out)
        options = target.onnxruntime.for_stage(stage)
        engine = OrtEngine(stage, out, inputs, outputs, max_dims, options)
        engine.warmup()
        facts = provider_report(target.onnxruntime.providers, engine.providers)
        if precision == "int8" and engine.providers[0] == CPU and options.graph_optimization in FUSING_LEVELS:
            facts["int8_products_saturate"] = int8_products_saturate(cpu_flags())
        return facts

    def load_stage(self, stage: str, path: Path, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
                   max_dims: Mapping[str, int], target: TargetProfile) -> Engine:
        options = target.onnxruntime.for_stage(stage)
        return OrtEngine(stage, path, inputs, outputs, max_dims, options, shared_lanes(options.threads))
