"""The fake GPU behind the fake ``cuda.bindings.runtime`` and ``tensorrt``: memory, streams, graphs.

Memory is real host memory (ctypes arrays), so the product's pointers can be read and written;
every allocation is tracked by kind (``device``, ``pinned``, ``mapped``) so a copy in the wrong
direction, a pointer that was never allocated or already freed, a double free and a leak are all
caught. Work on a stream is queued and runs at ``cudaStreamSynchronize`` (as on a GPU: nothing is
done until the stream is waited for), and a stream that is capturing records into a graph instead.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

POISON = 0xFF  # fresh memory reads as NaN in float32/float16: a row used before it was written shows


class ContractViolation(AssertionError):
    """A use of the CUDA/TensorRT API that real hardware would answer with corruption or a crash."""


@dataclass(frozen=True)
class DeviceSpec:
    """What ``cudaGetDeviceProperties`` and TensorRT report for one kind of target device."""

    name: str
    major: int
    minor: int
    integrated: bool
    sm_count: int
    dla_cores: int
    tensorrt: str = "10.3.0.30"
    cuda: int = 12060
    total_memory: int = 8 << 30


@dataclass
class Allocation:
    kind: str  # "device" | "pinned" | "mapped"
    buffer: Any
    nbytes: int
    what: str = ""


@dataclass
class FakeStream:
    handle: int
    ops: list[Callable[[], None]] = field(default_factory=list)
    capture: list[Callable[[], None]] | None = None
    capture_invalid: str | None = None
    destroyed: bool = False
    priority: int = 0

    def __int__(self) -> int:
        return self.handle


@dataclass
class FakeGraph:
    ops: list[Callable[[], None]]
    destroyed: bool = False


@dataclass
class FakeGraphExec:
    graph: FakeGraph
    destroyed: bool = False


class FakeDevice:
    """One GPU's state. ``capture_failure`` makes the next captures fail: ``"enqueue"`` (TensorRT
    refuses to enqueue while capturing) or ``"end"`` (``cudaStreamEndCapture`` reports the capture
    invalidated)."""

    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.allocations: dict[int, Allocation] = {}
        self.streams: dict[int, FakeStream] = {}
        self.graphs: list[FakeGraph] = []
        self.execs: list[FakeGraphExec] = []
        self.capture_failure: str | None = None
        self.launches = 0  # engine runs that really executed (graph replays included)
        self.schedule = 0  # cudaSetDeviceFlags' schedule (0: auto)
        self._next_stream = 0x5000

    # memory ----------------------------------------------------------------------------------
    def allocate(self, nbytes: int, kind: str) -> int:
        buffer = (ctypes.c_ubyte * nbytes)()
        ctypes.memset(buffer, POISON, nbytes)
        ptr = ctypes.addressof(buffer)
        self.allocations[ptr] = Allocation(kind, buffer, nbytes)
        return ptr

    def free(self, ptr: int, kinds: tuple[str, ...]) -> bool:
        alloc = self.allocations.get(int(ptr))
        if alloc is None or alloc.kind not in kinds:
            return False
        del self.allocations[int(ptr)]
        return True

    def region(self, ptr: int, nbytes: int, kinds: tuple[str, ...], what: str) -> memoryview:
        """The live memory at ``ptr`` .. ``ptr + nbytes``; a stale or foreign pointer is a violation."""
        ptr = int(ptr)
        for base, alloc in self.allocations.items():
            if base <= ptr < base + alloc.nbytes:
                if alloc.kind not in kinds:
                    raise ContractViolation(f"{what}: {alloc.kind} memory at {ptr:#x} used as {'/'.join(kinds)}")
                if ptr + nbytes > base + alloc.nbytes:
                    raise ContractViolation(f"{what}: {nbytes} bytes at {ptr:#x} overrun the allocation of "
                                            f"{alloc.nbytes} bytes")
                offset = ptr - base
                return memoryview(alloc.buffer).cast("B")[offset:offset + nbytes]
        raise ContractViolation(f"{what}: {ptr:#x} is not live memory (never allocated, or freed)")

    # streams ---------------------------------------------------------------------------------
    def new_stream(self) -> FakeStream:
        self._next_stream += 16
        stream = FakeStream(self._next_stream)
        self.streams[stream.handle] = stream
        return stream

    def stream(self, handle: Any, what: str) -> FakeStream:
        key = int(handle)
        if key == 0:
            raise ContractViolation(f"{what}: the legacy default stream (0) was used")
        stream = self.streams.get(key)
        if stream is None or stream.destroyed:
            raise ContractViolation(f"{what}: stream {key:#x} does not exist (destroyed?)")
        return stream

    def enqueue(self, stream: FakeStream, op: Callable[[], None]) -> None:
        (stream.capture if stream.capture is not None else stream.ops).append(op)

    def synchronize(self, stream: FakeStream) -> None:
        ops, stream.ops = stream.ops, []
        for op in ops:
            op()

    def live(self) -> list[str]:
        """What is still allocated: at the end of a test, each line is a leak."""
        lines = [f"{a.kind} allocation of {a.nbytes} bytes" for a in self.allocations.values()]
        lines += [f"stream {s.handle:#x}" for s in self.streams.values() if not s.destroyed]
        lines += ["CUDA graph" for g in self.graphs if not g.destroyed]
        lines += ["CUDA graph exec" for e in self.execs if not e.destroyed]
        return lines
