"""A TensorRT engine behind the engine protocol, driven with cuda-python.

Per engine bundle, one :class:`DeviceSession`: one TensorRT runtime, one non-default stream that
every engine enqueues on (so engines never run concurrently, even when the executor launches
several before waiting), and one scratch allocation shared by all execution contexts
(``ExecutionContextAllocationStrategy.USER_MANAGED``): device memory is about the largest
engine's scratch plus all weights, not the sum of every engine's scratch.

Per engine: pinned host buffers and device buffers allocated once at the profile maximum, their
addresses bound once with ``set_tensor_address``; a launch sets changed input shapes, copies the
bound rows in, ``execute_async_v3``, copies the result rows out. On an integrated GPU (Jetson) the
pinned buffers are mapped and handed to TensorRT directly: no copies at all. Static stages (one
padded shape) may be captured once into a CUDA graph and replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorrt as trt

from edgemoe.core.engine import TensorSpec, bind_inputs, warmup_shapes
from edgemoe.core.errors import EngineError
from edgemoe.engines.target import TrtOptions
from edgemoe.engines.tensorrt import cuda
from edgemoe.engines.tensorrt.builder import trt_major
from edgemoe.engines.tensorrt.detect import version_tuple
from edgemoe.engines.tensorrt.log import CapturingLogger
from edgemoe.engines.tensorrt.manifest import REBUILD, check_io, numpy_dtype_name
from edgemoe.engines.tensorrt.profiles import graph_refusal

log = logging.getLogger(__name__)


class DeviceSession:
    """What the engines of one bundle share: runtime, stream, scratch memory.

    The session counts every open engine, whether or not it uses the shared scratch
    (``share_scratch: false`` gives each context memory of its own, owned by TensorRT): the stream
    and the scratch are freed only when the last open engine closes, and a later load opens them
    again.
    """

    def __init__(self, options: TrtOptions) -> None:
        self.sync_refused = cuda.set_sync(options.sync)  # before TensorRT initialises the device, if it can
        self.logger = CapturingLogger()
        self.runtime = trt.Runtime(self.logger)
        if options.dla_core is not None and self.runtime.num_DLA_cores > options.dla_core:
            self.runtime.DLA_core = options.dla_core  # DLA engines run on the core they were built for
        self.facts = cuda.device_facts()
        self.zero_copy = options.zero_copy == "on" or (options.zero_copy == "auto" and self.facts.integrated)
        self.high_priority = options.stream_priority == "high"
        self.stream = cuda.Stream(self.high_priority)
        self.scratch: cuda.DeviceBuffer | None = None
        self._open: list[TrtEngine] = []
        self._scratch_users: list[TrtEngine] = []

    def open(self, engine: TrtEngine) -> None:
        """Count ``engine`` as open; the first engine after every earlier one closed gets a fresh stream."""
        if self.stream.raw is None:
            self.stream = cuda.Stream(self.high_priority)
        self._open.append(engine)

    def share_scratch(self, engine: TrtEngine, size: int) -> None:
        """Give ``engine`` the shared scratch, growing it (and re-pointing every user) if needed."""
        self._scratch_users.append(engine)
        if self.scratch is None or self.scratch.nbytes < size:
            self.stream.synchronize()
            if self.scratch is not None:
                self.scratch.close()
            self.scratch = cuda.DeviceBuffer(size, "shared TensorRT scratch memory")
            for user in self._scratch_users:
                user.use_scratch(self.scratch.ptr, self.scratch.nbytes)
        else:
            engine.use_scratch(self.scratch.ptr, self.scratch.nbytes)

    def release(self, engine: TrtEngine) -> None:
        """The last open engine to close frees the scratch memory and the stream."""
        if engine in self._scratch_users:
            self._scratch_users.remove(engine)
        if engine in self._open:
            self._open.remove(engine)
        if not self._open and self.stream.raw is not None:
            self.stream.synchronize()
            if self.scratch is not None:
                self.scratch.close()
                self.scratch = None
            self.stream.close()


class TrtEngine:
    """One stage as a TensorRT engine. Not thread-safe (one executor drives it)."""

    def __init__(self, name: str, blob: bytes, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                 max_dims: Mapping[str, int], options: TrtOptions, session: DeviceSession,
                 static: bool = False) -> None:
        self.name = name
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.static = static
        self._session = session
        self._options = options
        self._max_dims = dict(max_dims)
        self._limits = {spec.name: spec.max_shape(self._max_dims) for spec in self.inputs}
        self._graph: cuda.Graph | None = None
        self.graph_skipped: str | None = graph_refusal(name, options)  # None: captured at warm-up
        self._closed = False
        self._host: dict[str, cuda.HostBuffer] = {}
        self._device: dict[str, cuda.DeviceBuffer] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._set: dict[str, tuple[int, ...]] = {}
        self._ready: dict[str, np.ndarray] = {}
        engine = session.runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise EngineError(f"engine '{name}': TensorRT {trt.__version__} could not deserialise it (built by "
                              f"another TensorRT version or for another GPU?): " + " | ".join(session.logger.tail(3))
                              + f"; {REBUILD}")
        self.engine = engine
        check_io(name, self._engine_io(), {s.name: ("input", s.dtype) for s in self.inputs}
                 | {s.name: ("output", s.dtype) for s in self.outputs})
        session.open(self)
        try:
            self.context = self._create_context()
            for spec in self.inputs + self.outputs:
                self._allocate(spec)
            if static:  # one shape for ever: set it now
                for spec in self.inputs:
                    self._set_shape(spec.name, spec.max_shape(self._max_dims))
        except BaseException:
            self.close()  # what was allocated so far, and the session's share of it
            raise

    def _engine_io(self) -> dict[str, tuple[str, str]]:
        io = {}
        for i in range(self.engine.num_io_tensors):
            tensor = self.engine.get_tensor_name(i)
            mode = "input" if self.engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT else "output"
            io[tensor] = (mode, numpy_dtype_name(self.engine.get_tensor_dtype(tensor).name))
        return io

    def _create_context(self) -> trt.IExecutionContext:
        if not self._options.share_scratch:
            context = self.engine.create_execution_context()
        elif trt_major() >= 10:
            context = self.engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        else:  # TensorRT 8.6
            context = self.engine.create_execution_context_without_device_memory()
        if context is None:
            raise EngineError(f"engine '{self.name}': TensorRT could not create an execution context (out of "
                              f"device memory?): " + " | ".join(self._session.logger.tail(3)))
        if self._options.share_scratch:
            size = (self.engine.device_memory_size_v2 if hasattr(self.engine, "device_memory_size_v2")
                    else self.engine.device_memory_size)
            self.context = context
            self._session.share_scratch(self, int(size))
        return context

    def use_scratch(self, ptr: int, size: int) -> None:
        """Point this context at the shared scratch (again, when it grew); graphs hold old addresses."""
        if version_tuple(trt.__version__) >= (10, 1):
            self.context.set_device_memory(ptr, size)
        else:  # 8.6 and 10.0 spelling (a property), absent from the current API
            setattr(self.context, "device_memory", ptr)
        if self._graph is not None:
            self._graph.close()
            self._graph = None
            self._capture()

    def _allocate(self, spec: TensorSpec) -> None:
        shape = spec.max_shape(self._max_dims)
        zero_copy = self._session.zero_copy
        host = cuda.HostBuffer(shape, spec.dtype, mapped=zero_copy, what=f"'{self.name}' {spec.name}")
        self._host[spec.name] = host
        if zero_copy:
            address = host.device_ptr
        else:
            self._device[spec.name] = cuda.DeviceBuffer(host.nbytes, f"'{self.name}' {spec.name}")
            address = self._device[spec.name].ptr
        if not self.context.set_tensor_address(spec.name, address):
            raise EngineError(f"engine '{self.name}': set_tensor_address('{spec.name}') was refused")

    def _set_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if self._set.get(name) != shape:
            if not self.context.set_input_shape(name, shape):
                raise EngineError(f"engine '{self.name}' input '{name}': shape {list(shape)} is outside the "
                                  "engine's optimisation profile")
            self._set[name] = shape

    # the engine protocol -------------------------------------------------------------------------

    def input(self, name: str, shape: Sequence[int]) -> np.ndarray:
        shape = tuple(shape)
        limit = self._limits.get(name)
        if limit is None:
            raise EngineError(f"stage '{self.name}': no input '{name}' (inputs: {list(self._limits)})")
        if len(shape) != len(limit) or any(a > b for a, b in zip(shape, limit)):
            raise EngineError(f"stage '{self.name}' input '{name}': shape {list(shape)} exceeds the "
                              f"profile maximum {list(limit)}")
        self._shapes[name] = shape
        return _front(self._host[name].array, shape)

    def launch(self) -> None:
        symbols = bind_inputs(self.inputs, self._shapes, self.name)
        stream = self._session.stream
        for spec in self.inputs:
            shape = self._shapes[spec.name]
            if not self.static:
                self._set_shape(spec.name, shape)
            if spec.name in self._device:
                nbytes = int(np.prod(shape)) * self._host[spec.name].dtype.itemsize
                cuda.copy_to_device(self._device[spec.name].ptr, self._host[spec.name].ptr, nbytes, stream)
        self._enqueue()
        ready = {}
        for spec in self.outputs:
            shape = spec.resolve(symbols, self.name)
            if spec.name in self._device:
                nbytes = int(np.prod(shape)) * self._host[spec.name].dtype.itemsize
                cuda.copy_to_host(self._host[spec.name].ptr, self._device[spec.name].ptr, nbytes, stream)
            ready[spec.name] = _front(self._host[spec.name].array, shape)
        self._ready = ready

    def _enqueue(self) -> None:
        if self._graph is not None:
            self._graph.launch()
        elif not self.context.execute_async_v3(self._session.stream.handle):
            raise EngineError(f"engine '{self.name}': execute_async_v3 failed: "
                              + " | ".join(self._session.logger.tail(3)))

    def wait(self) -> Mapping[str, np.ndarray]:
        self._session.stream.synchronize()
        return self._ready

    def warmup(self) -> None:
        """Run at both profile extremes; then capture the CUDA graph of a static stage."""
        for shapes in warmup_shapes(self.inputs, self._max_dims):
            for name, shape in shapes.items():
                self.input(name, shape)[...] = 0
            self.launch()
            self.wait()
        if self.graph_skipped is None and self._graph is None:
            self._capture()

    def _capture(self) -> None:
        """Capture ``execute_async_v3`` after an ordinary run (TensorRT sets itself up on the first).

        A capture CUDA or TensorRT refuses leaves this engine on plain ``execute_async_v3``, with
        the reason in :meth:`describe` and the log: one engine without a graph is slower, never wrong.
        """
        stream = self._session.stream
        stream.synchronize()
        if not self.context.execute_async_v3(stream.handle):
            raise EngineError(f"engine '{self.name}': execute_async_v3 failed before graph capture")
        stream.synchronize()
        try:
            self._graph = cuda.Graph(stream, lambda: bool(self.context.execute_async_v3(stream.handle)))
        except cuda.GraphCaptureError as exc:
            tail = " | ".join(self._session.logger.tail(2))
            self.graph_skipped = f"capture failed: {exc}" + (f" ({tail})" if tail else "")
            log.warning("engine '%s' runs without a CUDA graph: %s", self.name, self.graph_skipped)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._session.stream.synchronize()
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        for buffer in list(self._host.values()) + list(self._device.values()):
            buffer.close()
        self._host.clear()
        self._device.clear()
        self._ready = {}
        self._session.release(self)

    def describe(self) -> dict[str, Any]:
        return {"backend": "tensorrt", "version": trt.__version__, "static": self.static,
                "cuda_graph": self._graph is not None, "cuda_graph_skipped": self.graph_skipped,
                "zero_copy": self._session.zero_copy, "stream_priority": self._options.stream_priority,
                "sync": self._options.sync if self._session.sync_refused is None
                else f"{self._options.sync} refused ({self._session.sync_refused})"}


def _front(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return buffer.reshape(-1)[: int(np.prod(shape))].reshape(shape)
