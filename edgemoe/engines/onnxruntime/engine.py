"""ONNX Runtime backend: one InferenceSession per stage, driven through io-binding.

Input and output buffers are numpy arrays allocated once at the profile maximum. Each distinct
input-shape signature gets one ``IOBinding`` pointing at the front of those buffers, built the
first time (warm-up builds the extremes) and reused after, so a steady-state call is one
``run_with_iobinding`` with no allocation and no rebinding. The views ``input`` hands out are
cached per (input, shape) too, so the per-frame Python work is a few dict lookups.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgemoe.core.engine import TensorSpec, bind_inputs, warmup_shapes
from edgemoe.core.errors import EngineError
from edgemoe.engines.onnxruntime.lanes import Job, Lanes
from edgemoe.engines.target import OrtOptions

_OPT_LEVEL = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def session_options(options: OrtOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    parallel = options.inter_op_threads > 1
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = _OPT_LEVEL[options.graph_optimization]
    so.log_severity_level = 3
    return so


def create_session(name: str, model: Path | bytes, options: OrtOptions) -> ort.InferenceSession:
    """A session with the requested providers; refuses a silent fallback when asked to."""
    available = ort.get_available_providers()
    wanted = [p for p in options.providers if p in available]
    lacking = [p for p in options.providers if p not in available]
    if lacking and options.require_providers:
        raise EngineError(f"stage '{name}': execution provider(s) {lacking} not available "
                          f"(this onnxruntime has {available}); install onnxruntime-gpu or change the target")
    try:
        source = str(model) if isinstance(model, Path) else model
        session = ort.InferenceSession(source, session_options(options), providers=wanted or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception zoo
        raise EngineError(f"stage '{name}': onnxruntime could not load the graph: {exc}") from exc
    got = session.get_providers()
    if options.require_providers and got[0] != options.providers[0]:
        raise EngineError(f"stage '{name}': asked for {options.providers[0]} but onnxruntime gave {got}")
    return session


class OrtEngine:
    """One stage on ONNX Runtime behind the engine protocol. With ``lanes`` (a thread budget
    above 1), ``launch`` queues the run and ``wait`` finishes it, so stages launched together run
    at once; without, ``launch`` runs it."""

    def __init__(self, name: str, model: Path | bytes, inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec], max_dims: Mapping[str, int],
                 options: OrtOptions = OrtOptions(), lanes: Lanes | None = None) -> None:
        self.name = name
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.session = create_session(name, model, options)
        self.providers: list[str] = self.session.get_providers()
        self._check_signature()
        self._max_dims = dict(max_dims)
        self._in = {s.name: np.zeros(s.max_shape(max_dims), s.dtype) for s in self.inputs}
        self._out = {s.name: np.zeros(s.max_shape(max_dims), s.dtype) for s in self.outputs}
        self._names = tuple(s.name for s in self.inputs)
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._views: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
        self._bindings: dict[tuple[tuple[int, ...] | None, ...],
                             tuple[Callable[[], None], dict[str, np.ndarray], ort.IOBinding]] = {}
        self._ready: dict[str, np.ndarray] = {}
        self._lanes = lanes
        self._job = Job()

    def _check_signature(self) -> None:
        graph_in = {i.name: _ORT_TYPES.get(i.type, i.type) for i in self.session.get_inputs()}
        graph_out = {o.name: _ORT_TYPES.get(o.type, o.type) for o in self.session.get_outputs()}
        for kind, specs, graph in (("input", self.inputs, graph_in), ("output", self.outputs, graph_out)):
            want = {s.name: s.dtype for s in specs}
            if want != graph:
                raise EngineError(f"stage '{self.name}': graph {kind}s {graph} do not match the manifest {want}")

    def input(self, name: str, shape: Sequence[int]) -> np.ndarray:
        key = (name, shape if type(shape) is tuple else tuple(shape))
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = _front(self._in[name], key[1])
        self._shapes[name] = key[1]
        return view

    def launch(self) -> None:
        key = tuple(map(self._shapes.get, self._names))
        entry = self._bindings.get(key)
        if entry is None:
            entry = self._bind()
            self._bindings[key] = entry
        run, views, _ = entry  # the IOBinding rides along so it lives as long as its runner
        self._ready = views
        if self._lanes is not None:
            self._lanes.launch(self._job, run)
            return
        try:
            run()
        except Exception as exc:
            raise EngineError(f"stage '{self.name}': onnxruntime run failed: {exc}") from exc

    def _bind(self) -> tuple[Callable[[], None], dict[str, np.ndarray], ort.IOBinding]:
        symbols = bind_inputs(self.inputs, self._shapes, self.name)
        for spec in self.inputs:
            limit = spec.max_shape(self._max_dims)
            if any(a > b for a, b in zip(self._shapes[spec.name], limit)):
                raise EngineError(f"stage '{self.name}' input '{spec.name}': shape "
                                  f"{list(self._shapes[spec.name])} exceeds the profile maximum {list(limit)}")
        binding = self.session.io_binding()
        for spec in self.inputs:
            buf = _front(self._in[spec.name], self._shapes[spec.name])
            binding.bind_input(spec.name, "cpu", 0, buf.dtype, buf.shape, buf.ctypes.data)
        views = {}
        for spec in self.outputs:
            buf = _front(self._out[spec.name], spec.resolve(symbols, self.name))
            binding.bind_output(spec.name, "cpu", 0, buf.dtype, buf.shape, buf.ctypes.data)
            views[spec.name] = buf
        return _runner(self.session, binding), views, binding

    def wait(self) -> Mapping[str, np.ndarray]:
        if self._lanes is not None:
            try:
                self._lanes.wait(self._job)
            except Exception as exc:
                raise EngineError(f"stage '{self.name}': onnxruntime run failed: {exc}") from exc
        return self._ready

    def warmup(self) -> None:
        """Run at every size of the profile (its extremes only when one dynamic dim has more than
        ``WARM_EVERY_SIZE_UP_TO`` sizes), so no frame pays for a first binding: the number of
        tokens routed to an expert changes every frame."""
        for shapes in _warm_shapes(self.inputs, self._max_dims):
            for name, shape in shapes.items():
                self.input(name, shape)[...] = 0
            self.launch()
            self.wait()

    @property
    def bound_shapes(self) -> int:
        """How many input-shape signatures have a binding; the profiler checks it does not grow
        after load (a growing count means a frame paid for a first binding)."""
        return len(self._bindings)

    def close(self) -> None:
        self._bindings.clear()
        self._views.clear()
        self._ready = {}


WARM_EVERY_SIZE_UP_TO = 1024


def _runner(session: ort.InferenceSession, binding: ort.IOBinding) -> Callable[[], None]:
    """A zero-argument call that runs ``binding`` through ONNX Runtime's public io-binding API.
    (Calling the private C++ entry point ``session._sess.run_with_iobinding`` instead skips a few
    Python checks per call; ``benchmarks/results/hot_path_robot4.md`` measures what that would
    save, ``run/priv`` there.)"""
    return functools.partial(session.run_with_iobinding, binding)


def _warm_shapes(specs: Sequence[TensorSpec], max_dims: Mapping[str, int]) -> list[dict[str, tuple[int, ...]]]:
    symbols = {d for spec in specs for d in spec.shape if isinstance(d, str)}
    if len(symbols) != 1 or max_dims[next(iter(symbols))] > WARM_EVERY_SIZE_UP_TO:
        return warmup_shapes(specs, max_dims)
    return [{spec.name: tuple(d if isinstance(d, int) else size for d in spec.shape) for spec in specs}
            for size in range(max_dims[next(iter(symbols))], 0, -1)]


def _front(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A contiguous view of the first ``prod(shape)`` elements of ``buffer``, reshaped."""
    return buffer.reshape(-1)[: int(np.prod(shape))].reshape(shape)
