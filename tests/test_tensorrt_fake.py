"""The TensorRT backend's five fixed faults and the API rules, on the contract-checking fake.

First the fake itself: each rule of the real API it enforces, shown failing on a misuse (a fake
that accepts anything would make the backend suite below worthless). Then the backend on it, on
one-stage ONNX graphs built here (no trained model needed): graph capture that fails, DLA engines
never captured, share_scratch on and off through load -> infer -> close -> load, the DLA report.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgemoe.core.engine import TensorSpec, run_engine
from edgemoe.core.errors import EngineError
from edgemoe.core.stages import FUSED_DIMS
from edgemoe.engines.target import TargetProfile, load_target
from edgemoe.engines.tensorrt.backend import TensorRTBackend
from edgemoe.engines.tensorrt.manifest import dla_placement
from edgemoe.engines.tensorrt.profiles import shape_ranges
from tests.fake_tensorrt import DEVICES, ContractViolation, FakeDevice, installed
from tests.fake_tensorrt.trt import ListLogger

DIM = 8
WEIGHT = np.random.default_rng(0).standard_normal((DIM, DIM)).astype(np.float32)
INPUTS = (TensorSpec("x", ("batch", DIM)),)
OUTPUTS = (TensorSpec("y", ("batch", DIM)),)
MAX = {"batch": 4, "tokens": 64}


def write_graph(path: Path, ops: tuple[str, ...] = ("MatMul", "Relu"), half: bool = False) -> Path:
    """``y = op_n(...op_1(x))``, x and y ``[batch, 8]`` float32 (an fp16 weight when ``half``)."""
    nodes, current, inits = [], "x", []
    for i, op in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        if op == "MatMul":
            weight = WEIGHT.astype(np.float16) if half else WEIGHT
            inits.append(numpy_helper.from_array(weight, f"w{i}"))
            if half:
                nodes.append(helper.make_node("Cast", [current], [f"h{i}"], to=TensorProto.FLOAT16, name=f"cast_in{i}"))
                nodes.append(helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"], name=f"matmul{i}"))
                nodes.append(helper.make_node("Cast", [f"m{i}"], [out], to=TensorProto.FLOAT, name=f"cast_out{i}"))
            else:
                nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [out], name=f"matmul{i}"))
        else:
            nodes.append(helper.make_node(op, [current], [out], name=f"{op.lower()}{i}"))
        current = out
    graph = helper.make_graph(nodes, "stage", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", DIM])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save_model(model, path)
    return path


def reference(x: np.ndarray, ops: tuple[str, ...] = ("MatMul", "Relu")) -> np.ndarray:
    for op in ops:
        x = x @ WEIGHT if op == "MatMul" else np.maximum(x, 0) if op == "Relu" else x
    return x


def target(name: str = "x86-gpu", **trt: object) -> TargetProfile:
    base = load_target(name)
    return base.model_copy(update={"tensorrt": base.tensorrt.model_copy(update=trt)})


def build(tmp_path: Path, stage: str, profile: TargetProfile, precision: str = "fp32",
          ops: tuple[str, ...] = ("MatMul", "Relu"), half: bool = False) -> tuple[Path, dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = write_graph(tmp_path / f"{stage}.onnx", ops, half)
    out = tmp_path / ".bundle.tmp" / f"{stage}.engine"
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = TensorRTBackend().build_stage(stage, source, precision, INPUTS, OUTPUTS, MAX, profile, out)
    return out, fields


# -- the fake enforces the real API's rules ---------------------------------------------------------------
@pytest.fixture
def fake() -> FakeDevice:
    with installed(DEVICES["x86-gpu"]) as device:
        yield device


def fake_network(tmp_path: Path, strongly_typed: bool = True):  # noqa: ANN201 (fake types)
    import tensorrt as trt

    logger = ListLogger()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0)
    assert trt.OnnxParser(network, logger).parse(write_graph(tmp_path / "g.onnx").read_bytes(), "g.onnx")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("x", trt.Dims([1, DIM]), trt.Dims([2, DIM]), trt.Dims([4, DIM]))
    config.add_optimization_profile(profile)
    return trt, logger, builder, network, config, profile


def test_a_strongly_typed_network_rejects_precision_flags(fake: FakeDevice, tmp_path: Path) -> None:
    trt, logger, builder, network, config, _ = fake_network(tmp_path)
    config.set_flag(trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is None
    assert "not allowed for a strongly typed network" in logger.lines[-1]
    config.clear_flag(trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is not None


def test_profile_names_must_be_the_graph_inputs(fake: FakeDevice, tmp_path: Path) -> None:
    trt, logger, builder, network, config, profile = fake_network(tmp_path)
    profile.set_shape("frame", trt.Dims([1, DIM]), trt.Dims([1, DIM]), trt.Dims([1, DIM]))
    assert builder.build_serialized_network(network, config) is None
    assert "'frame', which is not a network input" in logger.lines[-1]


def test_input_shapes_stay_inside_the_profile_and_every_address_is_set(fake: FakeDevice, tmp_path: Path) -> None:
    trt, logger, builder, network, config, _ = fake_network(tmp_path)
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    context = engine.create_execution_context()
    stream = fake.new_stream()
    assert not context.set_input_shape("x", (5, DIM)) and "outside the optimization profile" in logger.lines[-1]
    assert not context.set_input_shape("z", (1, DIM))
    assert context.set_input_shape("x", (3, DIM))
    x = fake.allocate(4 * DIM * 4, "device")
    assert context.set_tensor_address("x", x)
    assert not context.set_tensor_address("logits", x), "a name the ONNX graph lacks is refused"
    assert not context.execute_async_v3(stream.handle) and "address not set for ['y']" in logger.lines[-1]
    with pytest.raises(ContractViolation, match="legacy default stream"):
        context.execute_async_v3(0)


def test_user_managed_memory_must_be_set_big_enough_and_stay_alive(fake: FakeDevice, tmp_path: Path) -> None:
    trt, logger, builder, network, config, _ = fake_network(tmp_path)
    engine = trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    stream = fake.new_stream()
    io = fake.allocate(4 * DIM * 4, "device"), fake.allocate(4 * DIM * 4, "device")
    context.set_tensor_address("x", io[0]), context.set_tensor_address("y", io[1])
    context.set_input_shape("x", (4, DIM))
    assert not context.execute_async_v3(stream.handle) and "no device memory" in logger.lines[-1]
    small = fake.allocate(16, "device")
    context.set_device_memory(small, 16)
    assert "less than the engine's" in logger.lines[-1]
    scratch = fake.allocate(engine.device_memory_size_v2, "device")
    context.set_device_memory(scratch, engine.device_memory_size_v2)
    assert context.execute_async_v3(stream.handle)
    fake.free(scratch, ("device",))  # freed while the run is still queued
    with pytest.raises(ContractViolation, match="scratch memory.*not live memory"):
        fake.synchronize(stream)


def test_memory_freed_twice_or_copied_the_wrong_way_is_an_error(fake: FakeDevice) -> None:
    rt = importlib.import_module("cuda.bindings.runtime")  # the fake (``import a.b as m`` reads the package)

    err, ptr = rt.cudaMalloc(64)
    assert rt.cudaFree(ptr) == (rt.cudaError_t.cudaSuccess,)
    assert rt.cudaFree(ptr) == (rt.cudaError_t.cudaErrorInvalidValue,)
    _, host = rt.cudaHostAlloc(64, rt.cudaHostAllocDefault)
    _, dev = rt.cudaMalloc(64)
    _, stream = rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking)
    with pytest.raises(ContractViolation, match="source: pinned memory .* used as device/mapped"):
        rt.cudaMemcpyAsync(dev, host, 64, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    assert rt.cudaHostGetDevicePointer(host, 0)[0] == rt.cudaError_t.cudaErrorInvalidValue  # not mapped
    assert len(fake.live()) == 3  # host, dev, stream: a test that stopped here would report them leaked


def test_the_fake_refuses_to_capture_a_dla_engine(tmp_path: Path) -> None:
    with installed(DEVICES["jetson-agx-orin-dla"]):
        from edgemoe.engines.tensorrt import cuda

        profile = target("jetson-agx-orin-dla", static_stages=("encoder*",), cuda_graphs=False)
        path, fields = build(tmp_path, "encoder[a]", profile, "fp16", half=True)
        assert fields["dla"]["dla_layers"], fields["dla"]
        engine = TensorRTBackend().load_stage("encoder[a]", path, INPUTS, OUTPUTS, MAX, profile)
        engine.warmup()
        stream = engine._session.stream  # type: ignore[attr-defined]
        with pytest.raises(cuda.GraphCaptureError, match="cudaStreamEndCapture: cudaErrorStreamCaptureInvalidated"):
            cuda.Graph(stream, lambda: bool(engine.context.execute_async_v3(stream.handle)))  # type: ignore[attr-defined]
        np.testing.assert_allclose(run_engine(engine, {"x": np.ones((2, DIM), np.float32)})["y"],
                                   reference(np.ones((2, DIM), np.float32)), rtol=1e-2, atol=1e-2)
        engine.close()


# -- the five faults, fixed ---------------------------------------------------------------------------------
def test_fused_engines_take_a_profile_whose_opt_names_tokens() -> None:
    """Fault 1: ``opt: {tokens: 32}`` made every fused stage (dims ``{batch: 1}``) unbuildable."""
    fused_inputs = (TensorSpec("camera", (1, 1, 16, 16)), TensorSpec("imu", (1, 6, 32)))
    for name in ("x86-gpu", "jetson-orin-nano", "jetson-agx-orin", "jetson-agx-orin-dla", "jetson-thor"):
        ranges = shape_ranges("fused[5]", fused_inputs, FUSED_DIMS, load_target(name).tensorrt)
        assert ranges["camera"].static and ranges["imu"].max == (1, 6, 32)


def test_a_capture_that_fails_leaves_the_engine_on_plain_execution(tmp_path: Path) -> None:
    """Fault 3: a refused capture killed the bundle load; now the engine runs without a graph and says why."""
    for failure in ("enqueue", "end"):
        with installed(DEVICES["x86-gpu"]) as device:
            profile = target(static_stages=("head",), cuda_graphs=True)
            path, fields = build(tmp_path / failure, "head", profile)
            device.capture_failure = failure
            engine = TensorRTBackend().load_stage("head", path, INPUTS, OUTPUTS, MAX, profile)
            engine.warmup()
            assert fields["cuda_graph"] == "captured at warm-up"  # the plan; the load found otherwise
            about = engine.describe()  # type: ignore[attr-defined]
            assert not about["cuda_graph"] and about["cuda_graph_skipped"].startswith("capture failed")
            x = np.random.default_rng(1).standard_normal((3, DIM)).astype(np.float32)
            np.testing.assert_allclose(run_engine(engine, {"x": x})["y"], reference(x), rtol=1e-5, atol=1e-5)
            engine.close()
            assert device.live() == []


def test_a_captured_graph_replays_the_engine(tmp_path: Path) -> None:
    with installed(DEVICES["x86-gpu"]) as device:
        profile = target(static_stages=("head",), cuda_graphs=True)
        path, _ = build(tmp_path, "head", profile)
        engine = TensorRTBackend().load_stage("head", path, INPUTS, OUTPUTS, MAX, profile)
        engine.warmup()
        assert engine.describe()["cuda_graph"]  # type: ignore[attr-defined]
        for seed in (2, 3):  # the graph reads the input buffer at replay time
            x = np.random.default_rng(seed).standard_normal((2, DIM)).astype(np.float32)
            np.testing.assert_allclose(run_engine(engine, {"x": x})["y"], reference(x), rtol=1e-5, atol=1e-5)
        engine.close()
        assert device.live() == []


def test_dla_engines_are_never_captured(tmp_path: Path) -> None:
    """Fault 3, second half: the DLA profile asked for graphs on DLA engines, which TensorRT cannot capture."""
    with installed(DEVICES["jetson-agx-orin-dla"]) as device:
        profile = load_target("jetson-agx-orin-dla")
        path, fields = build(tmp_path, "encoder[a]", profile, "fp16", half=True)
        engine = TensorRTBackend().load_stage("encoder[a]", path, INPUTS, OUTPUTS, MAX, profile)
        engine.warmup()
        assert "DLA" in fields["cuda_graph"]
        assert "DLA" in engine.describe()["cuda_graph_skipped"]  # type: ignore[attr-defined]
        engine.close()
        assert device.live() == []


def test_the_dla_report_counts_myelin_foreign_nodes_on_the_gpu() -> None:
    """Fault 4: every ``{ForeignNode[...]}`` was counted as a DLA layer; Myelin's are GPU layers."""
    info = json.dumps({"Layers": [
        {"Name": "matmul0 to nvm", "LayerType": "Reformat"},
        {"Name": "{ForeignNode[matmul0...add1]}", "LayerType": "DLA"},
        {"Name": "add1 from nvm", "LayerType": "Reformat"},
        {"Name": "{ForeignNode[erf2...layernorm5]}", "LayerType": "Myelin"},
        {"Name": "{ForeignNode[x...y]}"},
    ]})
    report = dla_placement(info, [])
    assert report["dla_layers"] == ["{ForeignNode[matmul0...add1]}"]
    assert report["gpu_layers"] == 3 and report["unplaced"] == ["{ForeignNode[x...y]}"]


def test_a_dla_build_reports_fallback_and_gpu_layers(tmp_path: Path) -> None:
    with installed(DEVICES["jetson-agx-orin-dla"]):
        profile = load_target("jetson-agx-orin-dla")
        _, fields = build(tmp_path, "encoder[a]", profile, "fp16", ops=("MatMul", "Erf", "Sqrt", "Relu"), half=True)
        dla = fields["dla"]
        assert dla["fell_back_to_gpu"] == ["cast_in0", "cast_out0", "erf1", "sqrt2"]
        # on the GPU: the first Cast, 4 nvm reformats around the two DLA groups, one Myelin node
        assert len(dla["dla_layers"]) == 2 and dla["gpu_layers"] == 6


@pytest.mark.parametrize("share_scratch", [True, False])
def test_engines_close_in_any_order_and_load_again(share_scratch: bool, tmp_path: Path) -> None:
    """Fault 5: with ``share_scratch: false`` the first close destroyed the shared stream and the
    other engines then leaked their buffers; both settings must survive load -> infer -> close -> load."""
    with installed(DEVICES["x86-gpu"]) as device:
        profile = target(share_scratch=share_scratch)
        paths = [build(tmp_path, stage, profile)[0] for stage in ("gate", "head")]
        x = np.random.default_rng(4).standard_normal((3, DIM)).astype(np.float32)
        backend = TensorRTBackend()
        for _ in range(2):
            engines = [backend.load_stage(s, p, INPUTS, OUTPUTS, MAX, profile) for s, p in zip(("gate", "head"), paths)]
            for engine in engines:
                engine.warmup()
            engines[0].close()
            np.testing.assert_allclose(run_engine(engines[1], {"x": x})["y"], reference(x), rtol=1e-5, atol=1e-5)
            engines[1].close()
            engines[0].close()
            assert device.live() == []


def test_the_timing_cache_survives_garbage_on_disk(tmp_path: Path) -> None:
    with installed(DEVICES["x86-gpu"]):
        (tmp_path / "timing.cache").write_bytes(b"not a timing cache")
        _, fields = build(tmp_path, "gate", target())
        assert fields["timing_cache"]["reused"] is False
        _, again = build(tmp_path, "head", target())
        assert again["timing_cache"]["reused"] is True


def test_a_launch_past_the_profile_is_refused_by_name(tmp_path: Path) -> None:
    with installed(DEVICES["x86-gpu"]) as device:
        path, _ = build(tmp_path, "gate", target())
        engine = TensorRTBackend().load_stage("gate", path, INPUTS, OUTPUTS, MAX, target())
        with pytest.raises(EngineError, match=r"stage 'gate' input 'x'.*exceeds the profile maximum"):
            engine.input("x", (5, DIM))
            engine.launch()
        engine.close()
        assert device.live() == []


def test_the_fake_runtime_names_exist_in_cuda_python() -> None:
    """The fake invents no CUDA call: every function and constant it offers exists in cuda-python."""
    import cuda.bindings.runtime as real

    from tests.fake_tensorrt.cudart import make_cudart

    fake_module = make_cudart(FakeDevice(DEVICES["x86-gpu"]))
    names = [n for n in vars(fake_module) if n.startswith("cuda")]
    assert names and [n for n in names if not hasattr(real, n)] == []

