"""A fake ``cuda.bindings.runtime``: the calls the TensorRT backend makes, with CUDA's return
convention (``(cudaError_t, *values)``) and CUDA's rules, over a :class:`FakeDevice`."""

from __future__ import annotations

import enum
import types
from typing import Any

from tests.fake_tensorrt.device import FakeDevice, FakeGraph, FakeGraphExec, FakeStream

cudaHostAllocMapped = 2  # noqa: N816
DEVICE_KINDS = ("device", "mapped")
HOST_KINDS = ("pinned", "mapped")


class cudaError_t(enum.IntEnum):  # noqa: N801 (CUDA's spelling)
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalState = 401
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureWrongThread = 908


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(enum.IntEnum):  # noqa: N801
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class DeviceProperties:
    def __init__(self, device: FakeDevice) -> None:
        spec = device.spec
        self.name = spec.name.encode() + b"\x00" * (256 - len(spec.name))
        self.major, self.minor = spec.major, spec.minor
        self.integrated = int(spec.integrated)
        self.totalGlobalMem = spec.total_memory
        self.multiProcessorCount = spec.sm_count


# what a copy of each kind may read from and write to
_COPY_KINDS = {
    cudaMemcpyKind.cudaMemcpyHostToDevice: (HOST_KINDS, DEVICE_KINDS),
    cudaMemcpyKind.cudaMemcpyDeviceToHost: (DEVICE_KINDS, HOST_KINDS),
    cudaMemcpyKind.cudaMemcpyDeviceToDevice: (DEVICE_KINDS, DEVICE_KINDS),
    cudaMemcpyKind.cudaMemcpyHostToHost: (HOST_KINDS, HOST_KINDS),
    cudaMemcpyKind.cudaMemcpyDefault: (("device", "pinned", "mapped"), ("device", "pinned", "mapped")),
}


def make_cudart(device: FakeDevice) -> types.ModuleType:
    """A module object standing in for ``cuda.bindings.runtime`` on ``device``."""
    ok = cudaError_t.cudaSuccess

    def cudaGetErrorString(err: Any) -> tuple[cudaError_t, bytes]:
        return ok, f"fake CUDA error {getattr(err, 'name', err)}".encode()

    def cudaGetDeviceCount() -> tuple[cudaError_t, int]:
        return ok, 1

    def cudaGetDeviceProperties(index: int) -> tuple[cudaError_t, Any]:
        return (ok, DeviceProperties(device)) if index == 0 else (cudaError_t.cudaErrorInvalidValue, None)

    def cudaRuntimeGetVersion() -> tuple[cudaError_t, int]:
        return ok, device.spec.cuda

    def cudaDriverGetVersion() -> tuple[cudaError_t, int]:
        return ok, device.spec.cuda

    def cudaMalloc(nbytes: int) -> tuple[cudaError_t, int]:
        if nbytes <= 0 or nbytes > device.spec.total_memory:
            return cudaError_t.cudaErrorMemoryAllocation, 0
        return ok, device.allocate(int(nbytes), "device")

    def cudaFree(ptr: int) -> tuple[cudaError_t]:
        return (ok,) if device.free(ptr, ("device",)) else (cudaError_t.cudaErrorInvalidValue,)

    def cudaHostAlloc(nbytes: int, flags: int) -> tuple[cudaError_t, int]:
        if nbytes <= 0:
            return cudaError_t.cudaErrorInvalidValue, 0
        return ok, device.allocate(int(nbytes), "mapped" if flags & cudaHostAllocMapped else "pinned")

    def cudaFreeHost(ptr: int) -> tuple[cudaError_t]:
        return (ok,) if device.free(ptr, HOST_KINDS) else (cudaError_t.cudaErrorInvalidValue,)

    def cudaHostGetDevicePointer(ptr: int, flags: int) -> tuple[cudaError_t, int]:
        alloc = device.allocations.get(int(ptr))
        if alloc is None or alloc.kind != "mapped" or flags != 0:
            return cudaError_t.cudaErrorInvalidValue, 0
        return ok, int(ptr)  # unified addressing: the same address on both sides

    def cudaStreamCreateWithFlags(flags: int) -> tuple[cudaError_t, FakeStream]:
        return ok, device.new_stream()

    def cudaDeviceGetStreamPriorityRange() -> tuple[cudaError_t, int, int]:
        return ok, 0, -5  # (least, greatest): lower numbers are higher priorities, as on Ampere

    def cudaStreamCreateWithPriority(flags: int, priority: int) -> tuple[cudaError_t, FakeStream]:
        stream = device.new_stream()
        stream.priority = min(0, max(-5, int(priority)))  # CUDA clamps to the range
        return ok, stream

    def cudaSetDeviceFlags(flags: int) -> tuple[cudaError_t]:
        if flags not in (0, 1, 2, 4):
            return (cudaError_t.cudaErrorInvalidValue,)
        device.schedule = flags
        return (ok,)

    def cudaStreamSynchronize(handle: Any) -> tuple[cudaError_t]:
        stream = device.stream(handle, "cudaStreamSynchronize")
        if stream.capture is not None:  # forbidden while capturing: it also invalidates the capture
            stream.capture_invalid = "cudaStreamSynchronize during capture"
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        device.synchronize(stream)
        return (ok,)

    def cudaStreamDestroy(handle: Any) -> tuple[cudaError_t]:
        stream = device.stream(handle, "cudaStreamDestroy")
        device.synchronize(stream)  # queued work still completes
        stream.destroyed = True
        return (ok,)

    def cudaMemcpyAsync(dst: int, src: int, nbytes: int, kind: cudaMemcpyKind, handle: Any) -> tuple[cudaError_t]:
        stream = device.stream(handle, "cudaMemcpyAsync")
        reads, writes = _COPY_KINDS[cudaMemcpyKind(kind)]
        what = f"cudaMemcpyAsync({cudaMemcpyKind(kind).name})"
        device.region(src, nbytes, reads, what + " source")
        device.region(dst, nbytes, writes, what + " destination")

        def copy() -> None:  # the regions are looked up again when the copy runs: freed by then is a bug
            source = device.region(src, nbytes, reads, what + " source (at run time)")
            target = device.region(dst, nbytes, writes, what + " destination (at run time)")
            target[:] = source

        device.enqueue(stream, copy)
        return (ok,)

    def cudaStreamBeginCapture(handle: Any, mode: cudaStreamCaptureMode) -> tuple[cudaError_t]:
        stream = device.stream(handle, "cudaStreamBeginCapture")
        if stream.capture is not None:
            return (cudaError_t.cudaErrorIllegalState,)
        if stream.ops:
            raise AssertionError("capture began with work still queued on the stream (synchronise first)")
        stream.capture, stream.capture_invalid = [], None
        return (ok,)

    def cudaStreamEndCapture(handle: Any) -> tuple[cudaError_t, FakeGraph | None]:
        stream = device.stream(handle, "cudaStreamEndCapture")
        if stream.capture is None:
            return cudaError_t.cudaErrorInvalidValue, None
        ops, stream.capture = stream.capture, None
        invalid = stream.capture_invalid or ("forced by the test" if device.capture_failure == "end" else None)
        if invalid:
            return cudaError_t.cudaErrorStreamCaptureInvalidated, None
        graph = FakeGraph(ops)
        device.graphs.append(graph)
        return ok, graph

    def cudaGraphInstantiate(graph: FakeGraph, flags: int) -> tuple[cudaError_t, FakeGraphExec | None]:
        if graph.destroyed:
            raise AssertionError("cudaGraphInstantiate of a destroyed graph")
        graph_exec = FakeGraphExec(graph)
        device.execs.append(graph_exec)
        return ok, graph_exec

    def cudaGraphLaunch(graph_exec: FakeGraphExec, handle: Any) -> tuple[cudaError_t]:
        stream = device.stream(handle, "cudaGraphLaunch")
        if graph_exec.destroyed:
            raise AssertionError("cudaGraphLaunch of a destroyed graph exec")
        for op in graph_exec.graph.ops:
            device.enqueue(stream, op)
        return (ok,)

    def cudaGraphExecDestroy(graph_exec: FakeGraphExec) -> tuple[cudaError_t]:
        if graph_exec.destroyed:
            return (cudaError_t.cudaErrorInvalidValue,)
        graph_exec.destroyed = True
        return (ok,)

    def cudaGraphDestroy(graph: FakeGraph) -> tuple[cudaError_t]:
        if graph.destroyed:
            return (cudaError_t.cudaErrorInvalidValue,)
        graph.destroyed = True
        return (ok,)

    module = types.ModuleType("cuda.bindings.runtime", "fake cuda-python runtime (tests only)")
    module.__dict__.update({k: v for k, v in locals().items() if k.startswith("cuda")})
    module.__dict__.update(cudaError_t=cudaError_t, cudaMemcpyKind=cudaMemcpyKind,
                           cudaStreamCaptureMode=cudaStreamCaptureMode, cudaStreamNonBlocking=1,
                           cudaHostAllocDefault=0, cudaHostAllocMapped=cudaHostAllocMapped,
                           cudaDeviceScheduleAuto=0, cudaDeviceScheduleSpin=1, cudaDeviceScheduleYield=2,
                           cudaDeviceScheduleBlockingSync=4)
    return module

