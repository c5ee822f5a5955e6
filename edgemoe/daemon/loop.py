"""The sensor loop: datagrams -> parser -> tracker -> mask -> compiled plan -> runtime -> sinks.

One thread does all of it, so there is no lock on the hot path and the order of records is the
order of predictions. Scheduling is either ``fixed`` (a prediction every ``1/rate_hz`` s, from
whatever is available then) or ``on_arrival`` (a prediction after each batch of accepted frames,
at most ``max_rate_hz`` per second). A prediction is written to every sink before the next one
is computed, so stopping after any iteration loses no computed prediction. With ``prewarm_ms``
the fixed schedule also runs the current mask once, untimed and unwritten, that long before each
tick: the idle time between ticks leaves caches cold, and the tick's call pays for it.

The runtime is swappable: :meth:`offer_runtime` hands in a loaded, warmed one (from a reload
thread) and the loop switches to it between two predictions; the old one is closed after.
"""

from __future__ import annotations

import ctypes
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable, Sequence

from edgemoe.core.errors import EdgeMoEError
from edgemoe.daemon.config import Loop
from edgemoe.daemon.flags import FlagSource
from edgemoe.daemon.metrics import DaemonMetrics, Health
from edgemoe.daemon.sinks import Sink, encode_record, prediction_record
from edgemoe.daemon.sources import Source
from edgemoe.daemon.tracker import AvailabilityTracker
from edgemoe.daemon.wire import WireSchema, parse
from edgemoe.runtime.runtime import Runtime

log = logging.getLogger("edgemoe.daemon")
RUNTIME_ERROR = "runtime_error"
MISSED_TICK = "missed_tick"


def release_freed_heap() -> None:
    """Hand the heap a closed bundle freed back to the OS (under 1 ms). glibc keeps freed memory
    in the arena of the thread that allocated it, and each reload loads in a new thread, so without
    this the RSS grows by about a megabyte per reload. A no-op where ``malloc_trim`` does not exist."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


class SensorLoop:
    def __init__(self, runtime: Runtime, bundle_id: str, tracker: AvailabilityTracker,
                 sources: Sequence[Source], sinks: Sequence[Sink], metrics: DaemonMetrics,
                 health: Health, loop: Loop, flags: FlagSource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.bundle_id = bundle_id
        self.wire = WireSchema(runtime.config)
        self.tracker = tracker
        self.sources = list(sources)
        self.sinks = list(sinks)
        self.metrics = metrics
        self.health = health
        self.spec = loop
        self.flags = flags
        self.clock = clock
        self.mask = -1
        self.predictions = 0
        self.prewarms = 0
        self.datagrams = 0
        self._stop = threading.Event()
        self._offered: tuple[Runtime, str] | None = None
        self._offer_lock = threading.Lock()
        self._wakers: list[int] = []

    # -- control, callable from other threads / signal handlers ----------------------------------
    def stop(self) -> None:
        self._stop.set()

    def offer_runtime(self, runtime: Runtime, bundle_id: str) -> None:
        with self._offer_lock:
            self._offered = (runtime, bundle_id)

    def add_waker(self, fd: int) -> None:
        """A file descriptor that wakes the loop (e.g. the signal wake-up socket); drained on wake."""
        self._wakers.append(fd)

    # -- the per-datagram path ------------------------------------------------------------------
    def ingest(self, datagram: bytes, now: float) -> bool:
        """Parse and track one datagram; count it as a frame or as a drop. Never raises on input."""
        self.datagrams += 1
        self.metrics.datagrams.inc()
        frame = parse(datagram, self.wire)
        if isinstance(frame, str):
            self.metrics.drop(frame)
            return False
        reason = self.tracker.accept(frame, now)
        if reason is not None:
            self.metrics.drop(reason)
            return False
        self.metrics.frame(frame.sensor)
        return True

    # -- the per-prediction path ----------------------------------------------------------------
    def predict(self, now: float) -> None:
        mask = self.tracker.update(now)
        if mask != self.mask:
            if self.mask >= 0:
                self.metrics.switches.inc()
            self.mask = mask
            self.metrics.set_mask(mask)
        try:
            # trusted door: the tracker accepted only well-formed, finite frames
            prediction = self.runtime.run(mask, self.tracker.inputs)
        except EdgeMoEError as exc:
            self.metrics.drop(RUNTIME_ERROR)
            log.error("prediction failed under mask %d: %s", mask, exc)
            return
        self.predictions += 1
        line = encode_record(prediction_record(self.predictions, prediction, self.bundle_id))
        for sink in self.sinks:
            sink.write(line)
        self.metrics.predicted(mask, prediction.latency_s)

    def prewarm(self) -> None:
        """Run the current mask once, untimed, its answer discarded: called shortly before a tick,
        it brings the engines' weights and code back into the caches the idle time between ticks
        emptied, so the tick's own call runs at nearly tight-loop speed."""
        if self.mask <= 0:
            return
        try:
            self.runtime.run(self.mask, self.tracker.inputs)
        except EdgeMoEError:
            return  # the tick's own call reports it
        self.prewarms += 1

    def swap_if_offered(self) -> None:
        if self._offered is None:
            return
        with self._offer_lock:
            (runtime, bundle_id), self._offered = self._offered, None
        old, self.runtime, self.bundle_id = self.runtime, runtime, bundle_id
        self.health.info["bundle"] = bundle_id
        log.info("switched to engine bundle %s", bundle_id)
        old.close()
        release_freed_heap()

    # -- the loop -------------------------------------------------------------------------------
    def run(self, max_seconds: float | None = None) -> None:
        selector = selectors.DefaultSelector()
        for source in self.sources:
            if (fd := source.fileno()) is not None:
                selector.register(fd, selectors.EVENT_READ, source)
        if self.flags is not None and (fd := self.flags.fileno()) is not None:
            selector.register(fd, selectors.EVENT_READ, self.flags)
        for fd in self._wakers:
            selector.register(fd, selectors.EVENT_READ, None)
        timed = [s for s in self.sources if s.fileno() is None]
        fixed = self.spec.schedule == "fixed"
        period = 1.0 / (self.spec.rate_hz if fixed else self.spec.max_rate_hz)
        start = self.clock()
        end = None if max_seconds is None else start + max_seconds
        next_tick = start + period
        lead = self.spec.prewarm_ms * 1e-3 if fixed else 0.0
        warmed = start  # the tick the last prewarm was for
        self.health.running = True
        try:
            while not self._stop.is_set() and (end is None or self.clock() < end):
                now = self.clock()
                wake = [next_tick if fixed else now + 0.1]
                if lead and warmed != next_tick:
                    wake.append(next_tick - lead)
                wake += [d for d in (s.next_due() for s in timed) if d is not None]
                events = selector.select(max(0.0, min(wake) - now))
                now = self.clock()
                arrived = self._drain(events, timed, now)
                if self.flags is not None:
                    self.flags.poll_file(now)
                self.swap_if_offered()
                if fixed and now >= next_tick:
                    self.predict(now)
                    next_tick += period
                    if next_tick <= now:  # fell behind: skip, do not burst
                        self.metrics.drop(MISSED_TICK)
                        next_tick = now + period
                elif lead and warmed != next_tick and now >= next_tick - lead:
                    self.prewarm()
                    warmed = next_tick
                elif not fixed and arrived and now >= next_tick:
                    self.predict(now)
                    next_tick = now + period
                self.health.last_tick = now
        finally:
            self.health.running = False
            selector.close()

    def _drain(self, events: list, timed: list[Source], now: float) -> bool:
        arrived = False
        for key, _ in events:
            target = key.data
            if target is None:
                try:
                    os.read(key.fd, 512)
                except OSError:
                    pass
            elif target is self.flags:
                self.flags.receive()
            else:
                for datagram in target.receive(now, self.spec.max_batch):
                    arrived |= self.ingest(datagram, now)
        for source in timed:
            due = source.next_due()
            if due is not None and due <= now:
                for datagram in source.receive(now, self.spec.max_batch):
                    arrived |= self.ingest(datagram, now)
        return arrived

    def close(self) -> None:
        """Flush every sink (every computed prediction is on disk after this) and release sources."""
        for sink in self.sinks:
            sink.close()
        for source in self.sources:
            source.close()
        if self.flags is not None:
            self.flags.close()
