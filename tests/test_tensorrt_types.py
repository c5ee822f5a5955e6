"""The TensorRT backend is checked against TensorRT 10's API without TensorRT: mypy over the
patched type stubs must pass on our code and fail on every call TensorRT 10 removed."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from patch_tensorrt_stubs import patch_signature  # noqa: E402

from tests.polling import HANG_S  # noqa: E402

GOOD = '''
import tensorrt as trt

def build(logger: trt.ILogger, onnx: bytes) -> bytes | None:
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    parser.parse(onnx)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    profile = builder.create_optimization_profile()
    profile.set_shape("x", trt.Dims([1, 4]), trt.Dims([2, 4]), trt.Dims([8, 4]))
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    return None if blob is None else bytes(memoryview(blob))

def run(logger: trt.ILogger, blob: bytes, stream: int, ptr: int) -> bool:
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
    context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
    context.set_device_memory(ptr, engine.device_memory_size_v2)
    context.set_input_shape("x", (2, 4))
    context.set_tensor_address("x", ptr)
    return context.execute_async_v3(stream)
'''

# Each line marked REMOVED uses an API that TensorRT 10 removed (or never had); mypy must flag each.
BAD = '''
import tensorrt as trt

def legacy(logger: trt.ILogger, blob: bytes) -> None:
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    config = builder.create_builder_config()
    config.max_workspace_size = 1 << 20  # REMOVED
    builder.build_engine(network, config)  # REMOVED
    builder.max_batch_size = 4  # REMOVED
    config.set_flag(trt.BuilderFlag.STRICT_TYPES)  # REMOVED
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
    engine.get_binding_shape(0)  # REMOVED
    engine.num_bindings  # REMOVED
    engine.get_profile_shape(0, "x")  # REMOVED
    context = engine.create_execution_context()
    context.execute_async_v2([0], 0)  # REMOVED
    context.execute_async(1, [0], 0)  # REMOVED
    context.set_binding_shape(0, (1, 2))  # REMOVED
    context.execute_async_v3(0)
    context.exeucte_async_v3(0)  # REMOVED (misspelt)
'''


def stubs_ready() -> str | None:
    spec = importlib.util.find_spec("tensorrt")
    if spec is None or not spec.submodule_search_locations:
        return "tensorrt-stubs are not installed: run scripts/check_tensorrt_types.sh (scripts/test.sh does)"
    folder = Path(list(spec.submodule_search_locations)[0])
    if (folder / "__init__.py").exists():
        return "a real TensorRT is installed here; the stub check runs in a TensorRT-free environment"
    if not (folder / "py.typed").exists():
        return "tensorrt-stubs are not patched: run scripts/check_tensorrt_types.sh"
    return None


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    reason = stubs_ready()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("mypy")
    (folder / "good_api.py").write_text(GOOD)
    (folder / "bad_api.py").write_text(BAD)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", str(ROOT / "pyproject.toml"),
         "edgemoe/engines/tensorrt", str(folder / "good_api.py"), str(folder / "bad_api.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=HANG_S)
    errors: dict[str, list[int]] = {}
    for line in done.stdout.splitlines():
        match = re.match(r"(.+?):(\d+): error:", line)
        if match:
            errors.setdefault(Path(match.group(1)).name, []).append(int(match.group(2)))
    errors["_output"] = [done.returncode]
    print(done.stdout)
    return errors


def test_the_tensorrt_backend_type_checks_against_tensorrt_10(mypy_report: dict[str, list[int]]) -> None:
    ours = {k: v for k, v in mypy_report.items() if k not in ("bad_api.py", "_output")}
    assert ours == {}, f"mypy errors outside the bad snippet: {ours}"


def test_every_removed_or_misspelt_call_is_caught(mypy_report: dict[str, list[int]]) -> None:
    marked = [i + 1 for i, line in enumerate(BAD.splitlines()) if "# REMOVED" in line]
    assert len(marked) == 11
    assert sorted(set(mypy_report.get("bad_api.py", []))) == marked
    assert mypy_report["_output"] == [1]


def test_patcher_renames_keyword_parameters() -> None:
    line = "    def get_workspace_size(self, in: list[PluginTensorDesc], out: list[PluginTensorDesc]) -> int:"
    fixed = patch_signature(line)
    assert "in_: list[PluginTensorDesc]" in fixed and "out: list[PluginTensorDesc]" in fixed
    ast.parse(fixed.strip() + " ...")


def test_patcher_gives_trailing_parameters_a_default() -> None:
    line = ("    def add_scale_nd(self, input: ITensor, mode: ScaleMode, shift: Weights = None, "
            "scale: Weights = None, power: Weights = None, channel_axis: int) -> IScaleLayer:")
    fixed = patch_signature(line)
    assert fixed.strip().endswith("channel_axis: int = ...) -> IScaleLayer:")
    ast.parse(fixed.strip() + " ...")


def test_patcher_leaves_valid_lines_alone() -> None:
    line = "    def parse(self, model: typing_extensions.Buffer, path: str = None) -> bool:"
    assert patch_signature(line) == line


def test_every_cuda_runtime_call_we_make_exists_in_cuda_python() -> None:
    """cuda-python has no type stubs; check at least that each ``cudart.X`` we use exists."""
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    source = (ROOT / "edgemoe/engines/tensorrt/cuda.py").read_text()
    used = set(re.findall(r"(?:\brt|_rt\(\))\.(cuda\w+)", source))
    assert {"cudaMalloc", "cudaHostAlloc", "cudaMemcpyAsync", "cudaStreamCreateWithFlags",
            "cudaStreamBeginCapture", "cudaGraphLaunch"} <= used
    missing = sorted(name for name in used if not hasattr(runtime, name))
    assert missing == []
    for enum, member in re.findall(r"(?:\brt|_rt\(\))\.(cuda\w+)\.(cuda\w+)", source):
        assert hasattr(getattr(runtime, enum), member), f"{enum}.{member}"
