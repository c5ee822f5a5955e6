"""Host-side CUDA through NVIDIA's cuda-python (``cuda.bindings.runtime``), not pycuda.

Small owners of the few things an engine needs: one non-default stream, device buffers, pinned
host buffers (mapped into the GPU's address space on integrated GPUs such as Jetson, where the
GPU shares DRAM with the CPU and a copy would be pure waste), and CUDA graphs. Every call's error
code is checked and turned into an :class:`EngineError` naming the call and what it was for.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemoe.core.errors import EngineError
from edgemoe.engines.tensorrt.detect import load_cudart

cudart: Any = None


def _rt() -> Any:
    global cudart
    if cudart is None:
        cudart = load_cudart()
    return cudart


def check(result: Any, what: str) -> Any:
    """cuda-python returns ``(error, *values)``; raise on error, return the value(s)."""
    rt = _rt()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        _, text = rt.cudaGetErrorString(err)
        detail = text.decode() if isinstance(text, bytes) else str(text)
        raise EngineError(f"CUDA: {what} failed: {getattr(err, 'name', err)} ({detail})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


@dataclass(frozen=True)
class DeviceFacts:
    name: str
    compute_capability: str
    integrated: bool
    total_memory: int
    multiprocessor_count: int
    runtime_version: int
    driver_version: int


def device_facts(device: int = 0) -> DeviceFacts:
    rt = _rt()
    prop = check(rt.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return DeviceFacts(
        name=name.split("\x00")[0].strip(),
        compute_capability=f"{prop.major}.{prop.minor}",
        integrated=bool(prop.integrated),
        total_memory=int(prop.totalGlobalMem),
        multiprocessor_count=int(prop.multiProcessorCount),
        runtime_version=int(check(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")),
        driver_version=int(check(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")),
    )


class Stream:
    """One non-blocking stream: TensorRT's enqueue must not use the legacy default stream.

    ``high_priority``: the greatest priority the device offers, so the engines' kernels are
    scheduled ahead of other CUDA work in the process (a camera pipeline, a planner).
    """

    def __init__(self, high_priority: bool = False) -> None:
        rt = _rt()
        if high_priority:
            _, greatest = check(rt.cudaDeviceGetStreamPriorityRange(), "cudaDeviceGetStreamPriorityRange")
            self._stream = check(rt.cudaStreamCreateWithPriority(rt.cudaStreamNonBlocking, greatest),
                                 "cudaStreamCreateWithPriority")
        else:
            self._stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self.high_priority = high_priority

    @property
    def handle(self) -> int:
        return int(self._stream)

    @property
    def raw(self) -> Any:
        return self._stream

    def synchronize(self) -> None:
        check(_rt().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self._stream is not None:
            check(_rt().cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None


SCHEDULES = {"spin": "cudaDeviceScheduleSpin", "yield": "cudaDeviceScheduleYield",
             "blocking": "cudaDeviceScheduleBlockingSync"}


def set_sync(mode: str) -> str | None:
    """How a host thread waits for the GPU: ``spin`` (lowest latency, burns a core), ``yield``,
    ``blocking`` (sleeps; least power), ``auto`` (CUDA decides). None when applied, else why not
    (CUDA refuses once the device is initialised with other flags: the waits stay as they were)."""
    if mode == "auto":
        return None
    rt = _rt()
    err, *_ = rt.cudaSetDeviceFlags(getattr(rt, SCHEDULES[mode]))
    return None if err == rt.cudaError_t.cudaSuccess else f"cudaSetDeviceFlags: {getattr(err, 'name', err)}"


class DeviceBuffer:
    """``nbytes`` of device memory, allocated once."""

    def __init__(self, nbytes: int, what: str) -> None:
        self.nbytes = max(int(nbytes), 1)
        self.ptr = int(check(_rt().cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes}) for {what}"))

    def close(self) -> None:
        if self.ptr:
            check(_rt().cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class HostBuffer:
    """A pinned host array. ``mapped``: also addressable by the GPU at ``device_ptr`` (zero copy)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any] | str, mapped: bool, what: str) -> None:
        rt = _rt()
        self.dtype = np.dtype(dtype)
        self.nbytes = max(int(np.prod(shape)) * self.dtype.itemsize, 1)
        flags = rt.cudaHostAllocMapped if mapped else rt.cudaHostAllocDefault
        self.ptr = int(check(rt.cudaHostAlloc(self.nbytes, flags), f"cudaHostAlloc({self.nbytes}) for {what}"))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array: np.ndarray = np.frombuffer(memoryview(raw).cast("B"), dtype=self.dtype, count=int(np.prod(shape))).reshape(shape)
        self.device_ptr = (int(check(rt.cudaHostGetDevicePointer(self.ptr, 0), f"cudaHostGetDevicePointer for {what}"))
                           if mapped else 0)

    def close(self) -> None:
        if self.ptr:
            self.array = np.empty(0, self.dtype)
            check(_rt().cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


def copy_to_device(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    rt = _rt()
    check(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.raw),
          "cudaMemcpyAsync host->device")


def copy_to_host(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    rt = _rt()
    check(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.raw),
          "cudaMemcpyAsync device->host")


class GraphCaptureError(EngineError):
    """CUDA or TensorRT refused a capture; the engine runs without a graph (never fatal)."""


class Graph:
    """A CUDA graph captured from whatever ``enqueue`` puts on ``stream``, replayed by ``launch``.

    A graph is tied to the kernel arguments it was captured with: the tensor shapes and every
    device address (I/O buffers, scratch memory). Re-capture after any of them change.

    ``enqueue`` returns False when it could not enqueue (TensorRT's ``execute_async_v3`` does so
    when the engine holds work that cannot be captured). The capture is always ended, so the
    stream is usable afterwards, and any failure raises :class:`GraphCaptureError`.
    """

    def __init__(self, stream: Stream, enqueue: Callable[[], bool]) -> None:
        rt = _rt()
        self._stream = stream
        self._exec: Any = None
        check(rt.cudaStreamBeginCapture(stream.raw, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        enqueued = False
        try:
            enqueued = enqueue()
        finally:
            err, graph = rt.cudaStreamEndCapture(stream.raw)  # always end: a capturing stream runs nothing
            captured = err == rt.cudaError_t.cudaSuccess
            if captured and not enqueued and graph is not None:
                rt.cudaGraphDestroy(graph)
        if not captured:
            raise GraphCaptureError(f"cudaStreamEndCapture: {getattr(err, 'name', err)}")
        if not enqueued:
            raise GraphCaptureError("the engine could not be enqueued while the stream was capturing")
        self._graph = graph
        err, exec_ = rt.cudaGraphInstantiate(graph, 0)
        if err != rt.cudaError_t.cudaSuccess:
            rt.cudaGraphDestroy(graph)
            raise GraphCaptureError(f"cudaGraphInstantiate: {getattr(err, 'name', err)}")
        self._exec = exec_

    def launch(self) -> None:
        check(_rt().cudaGraphLaunch(self._exec, self._stream.raw), "cudaGraphLaunch")

    def close(self) -> None:
        rt = _rt()
        if self._exec is not None:
            check(rt.cudaGraphExecDestroy(self._exec), "cudaGraphExecDestroy")
            check(rt.cudaGraphDestroy(self._graph), "cudaGraphDestroy")
            self._exec = None
