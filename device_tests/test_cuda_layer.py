"""The cuda-python layer alone (needs a GPU, not TensorRT): buffers, copies, one stream, graphs."""

from __future__ import annotations

import numpy as np
import pytest

from edgemoe.core.errors import EngineError
from edgemoe.engines.tensorrt import cuda
from edgemoe.engines.tensorrt.detect import Probe


def test_device_facts(gpu: Probe) -> None:
    facts = cuda.device_facts()
    assert facts.name == gpu.facts["gpu"] and facts.compute_capability == gpu.facts["compute_capability"]
    assert facts.runtime_version > 0 and facts.driver_version >= 11000


def test_a_round_trip_through_device_memory_on_a_non_default_stream(gpu: Probe) -> None:
    stream = cuda.Stream()
    assert stream.handle != 0  # 0 is the legacy default stream
    src = cuda.HostBuffer((64, 32), "float32", mapped=False, what="src")
    dst = cuda.HostBuffer((64, 32), "float32", mapped=False, what="dst")
    dev = cuda.DeviceBuffer(src.nbytes, "dev")
    src.array[...] = np.arange(64 * 32, dtype=np.float32).reshape(64, 32)
    cuda.copy_to_device(dev.ptr, src.ptr, src.nbytes, stream)
    cuda.copy_to_host(dst.ptr, dev.ptr, src.nbytes, stream)
    stream.synchronize()
    np.testing.assert_array_equal(dst.array, src.array)
    for owner in (src, dst, dev, stream):
        owner.close()


def test_a_partial_copy_moves_only_the_bound_rows(gpu: Probe) -> None:
    stream = cuda.Stream()
    src = cuda.HostBuffer((8, 4), "float32", mapped=False, what="src")
    dst = cuda.HostBuffer((8, 4), "float32", mapped=False, what="dst")
    dev = cuda.DeviceBuffer(src.nbytes, "dev")
    src.array[...] = 1.0
    dst.array[...] = -1.0
    cuda.copy_to_device(dev.ptr, src.ptr, 3 * 4 * 4, stream)
    cuda.copy_to_host(dst.ptr, dev.ptr, 3 * 4 * 4, stream)
    stream.synchronize()
    assert (dst.array[:3] == 1.0).all() and (dst.array[3:] == -1.0).all()


def test_mapped_pinned_memory_has_a_device_address(gpu: Probe) -> None:
    buf = cuda.HostBuffer((16,), "float32", mapped=True, what="mapped")
    assert buf.device_ptr != 0
    buf.array[...] = 5.0  # what the GPU reads at device_ptr: copy it back through a device buffer
    stream, dev = cuda.Stream(), cuda.DeviceBuffer(buf.nbytes, "dev")
    out = cuda.HostBuffer((16,), "float32", mapped=False, what="out")
    cuda.copy_to_host(out.ptr, buf.device_ptr, buf.nbytes, stream)  # device address -> host
    stream.synchronize()
    assert (out.array == 5.0).all()
    for owner in (buf, dev, out, stream):
        owner.close()


def test_a_captured_graph_replays_the_copies(gpu: Probe) -> None:
    stream = cuda.Stream()
    src = cuda.HostBuffer((256,), "float32", mapped=False, what="src")
    dst = cuda.HostBuffer((256,), "float32", mapped=False, what="dst")
    dev = cuda.DeviceBuffer(src.nbytes, "dev")

    def enqueue() -> bool:
        cuda.copy_to_device(dev.ptr, src.ptr, src.nbytes, stream)
        cuda.copy_to_host(dst.ptr, dev.ptr, src.nbytes, stream)
        return True

    graph = cuda.Graph(stream, enqueue)
    for value in (3.0, 7.0):  # the graph reads the host buffer at replay time
        src.array[...] = value
        graph.launch()
        stream.synchronize()
        assert (dst.array == value).all()
    graph.close()


def test_cuda_errors_name_the_call(gpu: Probe) -> None:
    with pytest.raises(EngineError, match=r"cudaMalloc\(.*\) for absurd.*failed"):
        cuda.DeviceBuffer(1 << 60, "absurd")
