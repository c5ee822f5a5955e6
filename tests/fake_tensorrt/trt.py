"""A fake ``tensorrt`` (10.x): the part of the API the backend uses, with TensorRT's rules.

The builder parses the real ONNX file and serialises it, with what a real engine records (I/O,
optimisation profile, DLA placement, device), into a fake engine blob; the runtime's execution
context runs that ONNX graph with ONNX Runtime on the CPU, reading inputs from and writing outputs
to the fake device memory at the addresses the product bound, when the stream is synchronised.
What the real API refuses, this one refuses the same way: a build returns None with an error in
the log, ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` return False; what
real hardware would answer with corruption raises :class:`ContractViolation`.

Rules enforced (tests/test_tensorrt_fake.py shows the main ones failing on a misuse):
strongly typed networks reject precision flags; every input's profile entry matches the ONNX
graph's name, rank and static dims with min <= opt <= max; input shapes stay inside the profile;
every I/O tensor has an address before ``execute_async_v3``; a user-managed context has device
memory of at least ``device_memory_size_v2``; DLA needs static shapes, fp16/int8 and a DLA core,
layers it cannot run fall back to the GPU (logged) or fail the build; a DLA engine cannot be
captured into a CUDA graph; a capture may be made to fail; engines only deserialise on the
TensorRT version and compute capability that built them.
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct
import types
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from tests.fake_tensorrt.device import ContractViolation, FakeDevice

MAGIC = b"FAKETRT\0"
CACHE_MAGIC = b"FAKECACHE\0"
# Layer kinds a DLA runs, after the "DLA Supported Layers and Restrictions" table of the TensorRT
# docs (convolution, fully connected, activations, pooling, scale, elementwise, concatenation,
# shuffle, softmax, resize, slice). Erf (GELU), LayerNorm's reductions, Pow, Sqrt, Gather: GPU.
DLA_OPS = frozenset({
    "Conv", "ConvTranspose", "MatMul", "Gemm", "Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "PRelu",
    "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Add", "Sub", "Mul", "Max", "Min",
    "Concat", "Reshape", "Transpose", "Flatten", "Softmax", "Resize", "Slice", "Identity",
    "QuantizeLinear", "DequantizeLinear",
})
PRECISION_FLAGS = ("FP16", "INT8", "BF16", "FP8", "INT4")
_SESSIONS: dict[str, ort.InferenceSession] = {}  # by ONNX sha256: every build of a stage shares one


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        raise NotImplementedError


class Logger(ILogger):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = tuple(ILogger.Severity)

    def __init__(self, min_severity: ILogger.Severity = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        pass


class ListLogger(ILogger):
    """Keeps every message (for tests that drive the fake directly)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        self.lines.append(f"[{ILogger.Severity(severity).name}] {msg}")


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 5


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 4
    TF32 = 6
    BF16 = 17
    FP8 = 15
    INT4 = 22


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1


class ProfilingVerbosity(enum.IntEnum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


class ExecutionContextAllocationStrategy(enum.IntEnum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class LayerInformationFormat(enum.IntEnum):
    ONELINE = 0
    JSON = 1


ONNX_TO_TRT = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
               onnx.TensorProto.INT8: DataType.INT8, onnx.TensorProto.INT32: DataType.INT32,
               onnx.TensorProto.INT64: DataType.INT64, onnx.TensorProto.BOOL: DataType.BOOL}
NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
         DataType.INT32: np.int32, DataType.INT64: np.int64, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}


class Dims(tuple):  # type: ignore[type-arg]
    def __new__(cls, dims: Any = ()) -> Dims:
        return super().__new__(cls, (int(d) for d in dims))


def _error(logger: ILogger, msg: str) -> None:
    logger.log(ILogger.Severity.ERROR, msg)


# -- the network and its parser ----------------------------------------------------------------------------
class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.strongly_typed = bool(flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        self.model: onnx.ModelProto | None = None
        self.onnx_bytes = b""
        self.inputs: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []


def _io(values: Any) -> list[dict[str, Any]]:
    io = []
    for value in values:
        t = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        io.append({"name": value.name, "dtype": ONNX_TO_TRT[t.elem_type].name, "shape": shape})
    return io


class ParserError:
    def __init__(self, desc: str) -> None:
        self._desc = desc

    def node(self) -> int:
        return -1

    def desc(self) -> str:
        return self._desc

    def node_name(self) -> str:
        return ""

    def node_operator(self) -> str:
        return ""


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self.network, self.logger = network, logger
        self.errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def parse(self, model: bytes, path: str | None = None) -> bool:
        try:
            proto = onnx.load_from_string(bytes(model))
            onnx.checker.check_model(proto)
        except Exception as exc:  # noqa: BLE001 (the parser's answer is its error list)
            self.errors.append(ParserError(f"cannot parse {path}: {exc}"))
            return False
        initializers = {i.name for i in proto.graph.initializer}
        self.network.model = proto
        self.network.onnx_bytes = bytes(model)
        self.network.inputs = _io(v for v in proto.graph.input if v.name not in initializers)
        self.network.outputs = _io(proto.graph.output)
        return True


# -- builder and config ------------------------------------------------------------------------------------
class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[Dims, Dims, Dims]] = {}

    def set_shape(self, input: str, min: Dims, opt: Dims, max: Dims) -> None:  # noqa: A002 (TensorRT's names)
        self.shapes[input] = (Dims(min), Dims(opt), Dims(max))


class ITimingCache:
    def __init__(self, version: str, cc: str, entries: list[str]) -> None:
        self.version, self.cc, self.entries = version, cc, list(entries)

    def serialize(self) -> bytes:
        return CACHE_MAGIC + json.dumps({"version": self.version, "cc": self.cc, "entries": self.entries}).encode()


class IBuilderConfig:
    def __init__(self, device: FakeDevice) -> None:
        self._device = device
        self.flags: set[BuilderFlag] = {BuilderFlag.TF32}  # TF32 is on by default
        self.pools: dict[MemoryPoolType, int] = {}
        self.builder_optimization_level = 3
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.profiles: list[IOptimizationProfile] = []
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self._cache: ITimingCache | None = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        if size <= 0:
            raise ValueError("memory pool limit must be positive")
        self.pools[pool] = int(size)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(BuilderFlag(flag))

    def clear_flag(self, flag: BuilderFlag) -> None:
        self.flags.discard(BuilderFlag(flag))

    def get_flag(self, flag: BuilderFlag) -> bool:
        return BuilderFlag(flag) in self.flags

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache(self._device.spec.tensorrt, _cc(self._device), [])
        if not data.startswith(CACHE_MAGIC):
            return None  # what the binding answers for bytes it cannot read
        fields = json.loads(data[len(CACHE_MAGIC):])
        return ITimingCache(fields["version"], fields["cc"], fields["entries"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache is None:
            raise TypeError("set_timing_cache(): incompatible function arguments (cache is None)")
        if not ignore_mismatch and (cache.version != self._device.spec.tensorrt or cache.cc != _cc(self._device)):
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._cache


def _cc(device: FakeDevice) -> str:
    return f"{device.spec.major}.{device.spec.minor}"


def _graph_precision(model: onnx.ModelProto) -> str:
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops or "DequantizeLinear" in ops:
        return "int8"
    if any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        return "fp16"
    return "fp32"


class BuildError(Exception):
    """A build TensorRT refuses: logged as an error, ``build_serialized_network`` answers None."""


class BuilderBase:
    _device: FakeDevice

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802
        return self._device.spec.dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._device)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        try:
            header = self._build(network, config)
        except BuildError as exc:
            _error(self.logger, str(exc))
            return None
        if config.get_timing_cache() is not None:
            config.get_timing_cache().entries.append(hashlib.sha256(network.onnx_bytes).hexdigest()[:16])
        data = json.dumps(header).encode()
        return MAGIC + struct.pack("<I", len(data)) + data + network.onnx_bytes

    def _build(self, network: INetworkDefinition, config: IBuilderConfig) -> dict[str, Any]:
        if network.model is None:
            raise BuildError("Error Code 4: API Usage Error (network has no layers: parse the ONNX first)")
        flags = sorted(f.name for f in config.flags if f.name in PRECISION_FLAGS)
        if network.strongly_typed and flags:
            raise BuildError(f"Error Code 4: API Usage Error (builder flag(s) {flags} are not allowed for a "
                             "strongly typed network: types come from the network)")
        profile = _check_profiles(network, config)
        dla_core = None
        if config.default_device_type == DeviceType.DLA:
            if not 0 <= config.DLA_core < self.num_DLA_cores:
                raise BuildError(f"Error Code 2: Internal Error (DLA core {config.DLA_core} requested, the device "
                                 f"has {self.num_DLA_cores})")
            dla_core = config.DLA_core
        placement = _place(network, config, profile, dla_core is not None, self.logger)
        detailed = config.profiling_verbosity == ProfilingVerbosity.DETAILED
        return {
            "version": self._device.spec.tensorrt, "cc": _cc(self._device), "dla_core": dla_core,
            "strongly_typed": network.strongly_typed, "tf32": BuilderFlag.TF32 in config.flags,
            "inputs": network.inputs, "outputs": network.outputs,
            "profile": {k: [list(d) for d in v] for k, v in profile.items()},
            "layers": _layers(network.model, placement, detailed),
            "device_memory": 4096 + 512 * len(network.model.graph.node),
        }


def _check_profiles(network: INetworkDefinition, config: IBuilderConfig) -> dict[str, tuple[Dims, Dims, Dims]]:
    if len(config.profiles) != 1:
        raise BuildError(f"Error Code 4: expected one optimization profile, the config has {len(config.profiles)}")
    shapes = config.profiles[0].shapes
    names = {i["name"] for i in network.inputs}
    for name in shapes:
        if name not in names:
            raise BuildError(f"Error Code 4: optimization profile names '{name}', which is not a network input "
                             f"(inputs: {sorted(names)})")
    for spec in network.inputs:
        if spec["name"] not in shapes:
            if -1 in spec["shape"]:
                raise BuildError(f"Error Code 4: network input '{spec['name']}' has dynamic dims but no "
                                 "optimization profile")
            continue
        low, opt, high = shapes[spec["name"]]
        graph = spec["shape"]
        for dims in (low, opt, high):
            if len(dims) != len(graph) or any(g not in (-1, d) for g, d in zip(graph, dims)):
                raise BuildError(f"Error Code 4: profile dims {list(dims)} of '{spec['name']}' do not fit the "
                                 f"network's {graph}")
        if not all(1 <= a <= b <= c for a, b, c in zip(low, opt, high)):
            raise BuildError(f"Error Code 4: profile of '{spec['name']}' needs 1 <= min <= opt <= max, got "
                             f"{list(low)} {list(opt)} {list(high)}")
    return shapes


def _place(network: INetworkDefinition, config: IBuilderConfig, profile: dict[str, tuple[Dims, Dims, Dims]],
           dla: bool, logger: ILogger) -> list[bool]:
    """Per ONNX node: runs on the DLA. Unsupported layers fall back (logged) or fail the build."""
    assert network.model is not None
    nodes = network.model.graph.node
    if not dla:
        return [False] * len(nodes)
    static = all(low == high for low, _, high in profile.values())
    typed = _graph_precision(network.model) if network.strongly_typed else (
        "int8" if BuilderFlag.INT8 in config.flags else "fp16" if BuilderFlag.FP16 in config.flags else "fp32")
    placement = []
    for node in nodes:
        why = ("DLA does not support dynamic shapes" if not static
               else "DLA only supports FP16 and Int8" if typed == "fp32"
               else None if node.op_type in DLA_OPS else f"{node.op_type} is not a DLA layer")
        if why is not None:
            if BuilderFlag.GPU_FALLBACK not in config.flags:
                raise BuildError(f"Error Code 2: layer {node.name} cannot run on DLA ({why}) and GPU fallback is off")
            logger.log(ILogger.Severity.WARNING,
                       f"Default DLA is enabled but layer {node.name} is not supported on DLA, falling back to GPU.")
        placement.append(why is None)
    return placement


def _layers(model: onnx.ModelProto, placement: list[bool], detailed: bool) -> list[Any]:
    """The inspector's layers: runs of DLA nodes become DLA foreign nodes between nvm reformats;
    runs of GPU nodes become one Myelin foreign node (as TensorRT 10 does for such graphs)."""
    layers: list[dict[str, str]] = []
    nodes = list(model.graph.node)
    i = 0
    while i < len(nodes):
        j = i
        while j + 1 < len(nodes) and placement[j + 1] == placement[i]:
            j += 1
        first, last = nodes[i].name or nodes[i].op_type, nodes[j].name or nodes[j].op_type
        if placement[i]:
            layers += [{"Name": f"{first} to nvm", "LayerType": "Reformat"},
                       {"Name": f"{{ForeignNode[{first}...{last}]}}", "LayerType": "DLA"},
                       {"Name": f"{last} from nvm", "LayerType": "Reformat"}]
        elif j > i:
            layers.append({"Name": f"{{ForeignNode[{first}...{last}]}}", "LayerType": "Myelin"})
        else:
            layers.append({"Name": first, "LayerType": nodes[i].op_type})
        i = j + 1
    return layers if detailed else [layer["Name"] for layer in layers]


# -- runtime, engine, execution context ----------------------------------------------------------------
class IEngineInspector:
    def __init__(self, layers: list[Any]) -> None:
        self._layers = layers

    def get_engine_information(self, format: LayerInformationFormat) -> str:  # noqa: A002
        return json.dumps({"Layers": self._layers}) if format == LayerInformationFormat.JSON else str(self._layers)


class ICudaEngine:
    def __init__(self, device: FakeDevice, logger: ILogger, header: dict[str, Any], onnx_bytes: bytes) -> None:
        self._device, self._logger, self._header = device, logger, header
        self._onnx = onnx_bytes
        self._io = {t["name"]: ("input", t) for t in header["inputs"]} | {t["name"]: ("output", t) for t in header["outputs"]}
        self._names = list(self._io)
        self.dla_core: int | None = header["dla_core"]

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        if name not in self._io:
            return TensorIOMode.NONE
        return TensorIOMode.INPUT if self._io[name][0] == "input" else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType[self._io[name][1]["dtype"]]

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._io[name][1]["shape"])

    @property
    def device_memory_size_v2(self) -> int:
        return int(self._header["device_memory"])

    @property
    def device_memory_size(self) -> int:
        return int(self._header["device_memory"])

    def create_execution_context(self, strategy: ExecutionContextAllocationStrategy =
                                 ExecutionContextAllocationStrategy.STATIC) -> IExecutionContext:
        return IExecutionContext(self, ExecutionContextAllocationStrategy(strategy))

    def create_engine_inspector(self) -> IEngineInspector:
        return IEngineInspector(self._header["layers"])

    def session(self) -> ort.InferenceSession:
        key = hashlib.sha256(self._onnx).hexdigest()
        if key not in _SESSIONS:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            _SESSIONS[key] = ort.InferenceSession(self._onnx, options, providers=["CPUExecutionProvider"])
        return _SESSIONS[key]


class IExecutionContext:
    def __init__(self, engine: ICudaEngine, strategy: ExecutionContextAllocationStrategy) -> None:
        self.engine, self.strategy = engine, strategy
        self._addresses: dict[str, int] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._memory: tuple[int, int] | None = None
        for spec in engine._header["inputs"]:  # static inputs need no set_input_shape
            if -1 not in spec["shape"]:
                self._shapes[spec["name"]] = tuple(spec["shape"])

    def _error(self, msg: str) -> bool:
        _error(self.engine._logger, msg)
        return False

    def set_device_memory(self, memory: int, size: int) -> None:
        if self.strategy != ExecutionContextAllocationStrategy.USER_MANAGED:
            self._error("Error Code 3: setDeviceMemory needs a context created with USER_MANAGED")
            return
        if size < self.engine.device_memory_size_v2:
            self._error(f"Error Code 3: device memory of {size} bytes is less than the engine's "
                        f"{self.engine.device_memory_size_v2}")
            return
        self._memory = (int(memory), int(size))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine._io:
            return self._error(f"Error Code 3: setTensorAddress: '{name}' is not a tensor of this engine "
                               f"(tensors: {self.engine._names})")
        if not memory:
            return self._error(f"Error Code 3: setTensorAddress: null address for '{name}'")
        self._addresses[name] = int(memory)
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        kind, spec = self.engine._io.get(name, ("", None))
        if kind != "input" or spec is None:
            return self._error(f"Error Code 3: setInputShape: '{name}' is not an input of this engine")
        dims = tuple(int(d) for d in shape)
        low, _, high = self.engine._header["profile"].get(name, (spec["shape"], None, spec["shape"]))
        if len(dims) != len(spec["shape"]) or not all(a <= d <= b for a, d, b in zip(low, dims, high)):
            return self._error(f"Error Code 3: setInputShape: {list(dims)} for '{name}' is outside the "
                               f"optimization profile {low}..{high}")
        self._shapes[name] = dims
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        device, engine = self.engine._device, self.engine
        stream = device.stream(stream_handle, "execute_async_v3")
        unbound = [n for n in engine._names if n not in self._addresses]
        if unbound:
            return self._error(f"Error Code 3: executeV3: tensor address not set for {unbound}")
        unshaped = [t["name"] for t in engine._header["inputs"] if t["name"] not in self._shapes]
        if unshaped:
            return self._error(f"Error Code 3: executeV3: input shape not specified for {unshaped}")
        if self.strategy == ExecutionContextAllocationStrategy.USER_MANAGED and self._memory is None:
            return self._error("Error Code 3: executeV3: a USER_MANAGED context has no device memory set")
        if stream.capture is not None:
            if engine.dla_core is not None:
                stream.capture_invalid = "DLA engine"
                return self._error("Error Code 1: DLA engines cannot be captured in a CUDA graph")
            if device.capture_failure == "enqueue":
                stream.capture_invalid = "forced by the test"
                return self._error("Error Code 1: operation not permitted when stream is capturing")
        shapes, addresses, memory = dict(self._shapes), dict(self._addresses), self._memory
        device.enqueue(stream, lambda: self._run(shapes, addresses, memory))
        return True

    def _run(self, shapes: dict[str, tuple[int, ...]], addresses: dict[str, int],
             memory: tuple[int, int] | None) -> None:
        device, engine = self.engine._device, self.engine
        where = f"engine with inputs {[t['name'] for t in engine._header['inputs']]}"
        if memory is not None:
            device.region(memory[0], engine.device_memory_size_v2, ("device",), f"{where}: scratch memory")
        feeds = {}
        for spec in engine._header["inputs"]:
            dtype = np.dtype(NUMPY[DataType[spec["dtype"]]])
            shape = shapes[spec["name"]]
            raw = device.region(addresses[spec["name"]], int(np.prod(shape)) * dtype.itemsize,
                                ("device", "mapped"), f"{where}: input '{spec['name']}'")
            feeds[spec["name"]] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        names = [t["name"] for t in engine._header["outputs"]]
        for spec, value in zip(engine._header["outputs"], engine.session().run(names, feeds)):
            value = np.ascontiguousarray(value, dtype=NUMPY[DataType[spec["dtype"]]])
            if len(value.shape) != len(spec["shape"]) or any(d not in (-1, v) for d, v in zip(spec["shape"], value.shape)):
                raise ContractViolation(f"{where}: output '{spec['name']}' {value.shape} does not fit {spec['shape']}")
            out = device.region(addresses[spec["name"]], value.nbytes, ("device", "mapped"),
                                f"{where}: output '{spec['name']}'")
            out[:] = value.reshape(-1).view(np.uint8)
        device.launches += 1


class RuntimeBase:
    _device: FakeDevice

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        self._dla_core = -1

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802
        return self._device.spec.dla_cores

    @property
    def DLA_core(self) -> int:  # noqa: N802
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, core: int) -> None:  # noqa: N802
        if not 0 <= core < self.num_DLA_cores:
            _error(self.logger, f"Error Code 3: DLA core {core} does not exist ({self.num_DLA_cores} cores)")
            return
        self._dla_core = core

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            _error(self.logger, "Error Code 1: Serialization (magic tag does not match)")
            return None
        (length,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
        start = len(MAGIC) + 4
        header = json.loads(data[start:start + length])
        if header["version"] != self._device.spec.tensorrt:
            _error(self.logger, f"Error Code 1: Serialization (engine plan from TensorRT {header['version']}, "
                                f"this is {self._device.spec.tensorrt})")
            return None
        if header["cc"] != _cc(self._device):
            _error(self.logger, f"Error Code 1: engine built for SM {header['cc']}, this GPU is SM {_cc(self._device)}")
            return None
        if header["dla_core"] is not None and self._dla_core < 0:
            _error(self.logger, "Error Code 1: a DLA engine needs the runtime's DLA core set")
            return None
        return ICudaEngine(self._device, self.logger, header, data[start + length:])


def make_tensorrt(device: FakeDevice) -> types.ModuleType:
    """A module object standing in for ``tensorrt`` on ``device``."""
    module = types.ModuleType("tensorrt", "fake TensorRT (tests only)")
    module.__version__ = device.spec.tensorrt  # type: ignore[attr-defined]
    names = {
        "ILogger": ILogger, "Logger": Logger, "NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag,
        "BuilderFlag": BuilderFlag, "MemoryPoolType": MemoryPoolType, "ProfilingVerbosity": ProfilingVerbosity,
        "DeviceType": DeviceType, "TensorIOMode": TensorIOMode, "DataType": DataType, "Dims": Dims,
        "ExecutionContextAllocationStrategy": ExecutionContextAllocationStrategy,
        "LayerInformationFormat": LayerInformationFormat, "OnnxParser": OnnxParser,
        "INetworkDefinition": INetworkDefinition, "IBuilderConfig": IBuilderConfig,
        "IOptimizationProfile": IOptimizationProfile, "ITimingCache": ITimingCache, "ICudaEngine": ICudaEngine,
        "IExecutionContext": IExecutionContext, "IEngineInspector": IEngineInspector,
        "Builder": type("Builder", (BuilderBase,), {"_device": device}),
        "Runtime": type("Runtime", (RuntimeBase,), {"_device": device}),
    }
    module.__dict__.update(names)
    return module
