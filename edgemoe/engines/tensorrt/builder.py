"""One stage's ONNX variant -> one serialised TensorRT engine, built on the device itself.

TensorRT >= 10: a strongly typed network, every type taken from the graph (the int8 Q/DQ or the
fp16 variant), so no precision flags at all (TensorRT 11 removes them). TensorRT 8.6: the same
files with the INT8/FP16 builder flags. One optimisation profile spans every dynamic dim from 1
to its maximum; a timing cache beside the engine bundle makes later builds fast; static stages
may go to a DLA core with GPU fallback, and the report says which layers really landed there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tensorrt as trt

from edgemoe.core.engine import TensorSpec
from edgemoe.core.errors import ConfigError, EngineError
from edgemoe.engines.target import TrtOptions
from edgemoe.engines.tensorrt.detect import version_tuple
from edgemoe.engines.tensorrt.log import CapturingLogger
from edgemoe.engines.tensorrt.manifest import build_failure_hint, dla_placement, numpy_dtype_name, parser_errors
from edgemoe.engines.tensorrt.profiles import (
    ShapeRange, dla_flags, dla_skipped, graph_refusal, is_static, on_dla, precision_flags, shape_ranges, uses_strong_typing,
)


def trt_major() -> int:
    return version_tuple(trt.__version__)[0]


def _flag(name: str) -> trt.BuilderFlag:
    """Named flags, looked up only when used (TensorRT 11 has no FP16/INT8 members)."""
    flags = {
        "FP16": lambda: trt.BuilderFlag.FP16,
        "INT8": lambda: trt.BuilderFlag.INT8,
        "GPU_FALLBACK": lambda: trt.BuilderFlag.GPU_FALLBACK,
    }
    return flags[name]()


def parse_onnx(stage: str, source: Path, network: trt.INetworkDefinition, logger: CapturingLogger) -> None:
    parser = trt.OnnxParser(network, logger)
    if parser.parse(source.read_bytes(), str(source)):
        return
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        errors.append({
            "node": err.node(), "desc": err.desc(),
            # node_name()/node_operator() exist from TensorRT 10; 8.6 has only the node index
            "node_name": err.node_name() if hasattr(err, "node_name") else "",
            "operator": err.node_operator() if hasattr(err, "node_operator") else "",
        })
    raise EngineError(f"stage '{stage}': TensorRT's ONNX parser rejected {source.name}: {parser_errors(errors)}")


def configure(builder: trt.Builder, stage: str, precision: str, ranges: Mapping[str, ShapeRange],
              options: TrtOptions, strongly_typed: bool) -> tuple[trt.IBuilderConfig, list[str]]:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.builder_optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer names for the inspector
    names = list(precision_flags(precision, trt_major(), strongly_typed))
    profile = builder.create_optimization_profile()
    for name, r in ranges.items():
        profile.set_shape(name, trt.Dims(list(r.min)), trt.Dims(list(r.opt)), trt.Dims(list(r.max)))
    config.add_optimization_profile(profile)
    if on_dla(stage, options, precision):
        assert options.dla_core is not None
        if builder.num_DLA_cores <= options.dla_core:
            raise ConfigError(f"key 'tensorrt.dla_core': {options.dla_core} requested for stage '{stage}' but this "
                              f"device has {builder.num_DLA_cores} DLA core(s); set dla_core: null")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        names += dla_flags(stage, options, precision)
    for name in names:
        config.set_flag(_flag(name))
    if precision == "fp32":  # TF32 is on by default; an fp32 engine must compute what ONNX Runtime fp32 does
        config.clear_flag(trt.BuilderFlag.TF32)
    return config, names


def attach_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> bool:
    """Load the device's timing cache if there is one; True when an existing cache was reused.

    ``create_timing_cache`` answers None for bytes it cannot read, and ``set_timing_cache`` False
    for a cache from another TensorRT version or GPU: either way the build starts a fresh cache
    rather than fail (or run without one).
    """
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data) if data else None
    if cache is not None and config.set_timing_cache(cache, False):
        return True
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        raise EngineError("TensorRT could not create an empty timing cache; set 'tensorrt.timing_cache: null'")
    return False


def save_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(bytes(memoryview(cache.serialize())))
    os.replace(tmp, path)


def build_engine(stage: str, source: Path, precision: str, inputs: Sequence[TensorSpec],
                 max_dims: Mapping[str, int], options: TrtOptions, out: Path,
                 timing_cache: Path | None) -> dict[str, Any]:
    """Build ``out`` and return the engine's manifest fields (see docs/tensorrt.md)."""
    logger = CapturingLogger()
    builder = trt.Builder(logger)
    strongly_typed = uses_strong_typing(trt_major(), options)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    if trt_major() < 10:  # 8.6 needs explicit batch spelled out; 10 always is
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parse_onnx(stage, source, network, logger)
    ranges = shape_ranges(stage, inputs, max_dims, options)
    config, flag_names = configure(builder, stage, precision, ranges, options, strongly_typed)
    reused = attach_timing_cache(config, timing_cache) if timing_cache is not None else False
    started = time.perf_counter()
    blob = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if blob is None:
        tail = logger.tail()
        raise EngineError(f"stage '{stage}' ({precision}): TensorRT returned no engine. Log tail:\n  "
                          + "\n  ".join(tail) + f"\nHint: {build_failure_hint(tail)}")
    data = bytes(memoryview(blob))
    out.write_bytes(data)
    if timing_cache is not None:
        save_timing_cache(config, timing_cache)
    return {
        "tensorrt": trt.__version__,
        "strongly_typed": strongly_typed,
        "builder_flags": flag_names,
        "static": is_static(stage, options),
        "tf32": precision != "fp32",
        # whether warm-up captures a CUDA graph of this engine, or why not
        "cuda_graph": graph_refusal(stage, options) or "captured at warm-up",
        "profiles": {name: r.to_dict() for name, r in ranges.items()},
        "build_seconds": round(seconds, 3),
        "engine_bytes": len(data),
        "timing_cache": {"file": str(timing_cache) if timing_cache else None, "reused": reused},
        **describe_engine(data, logger, options.dla_core if on_dla(stage, options, precision) else None),
        **({"dla": {"skipped": skipped}} if (skipped := dla_skipped(stage, options, precision)) else {}),
    }


def dims_list(dims: trt.Dims) -> list[int]:
    return [int(dims[i]) for i in range(len(dims))]


def describe_engine(data: bytes, logger: CapturingLogger, dla_core: int | None) -> dict[str, Any]:
    """I/O, scratch size and (for DLA builds) layer placement, read back from the built engine."""
    runtime = trt.Runtime(logger)
    if dla_core is not None:  # a DLA engine deserialises only on a runtime told its DLA core
        runtime.DLA_core = dla_core
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EngineError("TensorRT could not read back the engine it just built: " + " | ".join(logger.tail(5)))
    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        io.append({"name": name, "mode": engine.get_tensor_mode(name).name.lower(),
                   "dtype": numpy_dtype_name(engine.get_tensor_dtype(name).name),
                   "shape": dims_list(engine.get_tensor_shape(name))})
    memory = engine.device_memory_size_v2 if hasattr(engine, "device_memory_size_v2") else engine.device_memory_size
    fields: dict[str, Any] = {"io": io, "device_memory_size": int(memory)}
    if dla_core is not None:
        inspector = engine.create_engine_inspector()
        fields["dla"] = dla_placement(inspector.get_engine_information(trt.LayerInformationFormat.JSON), logger.lines)
    return fields
