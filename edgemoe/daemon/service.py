"""The daemon as a process: assemble the loop from a config, wire signals, reload, shut down.

- Everything is loaded and warmed before the first datagram is read (``Runtime.load`` warms
  every engine; sockets are bound only after).
- SIGTERM / SIGINT: the loop stops after the current iteration; every computed prediction has
  already been written, and ``close`` flushes and fsyncs the sinks.
- SIGHUP: a background thread loads and warms the engine bundle at the same path again (point
  a symlink at a new build, then send SIGHUP); the loop keeps predicting with the old one and
  switches between two predictions. A bundle whose schema differs is refused, the old one stays.
- ``trust`` (a public key, from the config or ``edgemoe run --trust``): the bundle must carry that
  key's signature at start and at every reload; an unsigned, wrongly signed or tampered bundle is
  refused (at start the daemon does not start; on reload the serving bundle keeps serving).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from edgemoe.core.errors import EdgeMoEError
from edgemoe.core.signing import TrustedKey
from edgemoe.daemon.config import DaemonConfig
from edgemoe.daemon.flags import FlagSource
from edgemoe.daemon.loop import SensorLoop
from edgemoe.daemon.metrics import DaemonMetrics, Health, OpsServer
from edgemoe.daemon.sinks import DatagramSink, JsonLinesSink, Sink
from edgemoe.daemon.sources import DatagramSource, ReplaySource, Source
from edgemoe.daemon.tracker import AvailabilityTracker
from edgemoe.daemon.wire import WireSchema
from edgemoe.runtime.runtime import Runtime

log = logging.getLogger("edgemoe.daemon")


def bundle_id(path: Path) -> str:
    """Which build is serving: the resolved directory name (changes when a symlink is repointed)."""
    return Path(path).resolve().name


class Daemon:
    def __init__(self, engines: Path, config: DaemonConfig) -> None:
        self.engines = Path(engines)
        self.config = config
        self.trust = TrustedKey.load(config.trust) if config.trust is not None else None
        runtime = Runtime.load(self.engines, self.trust)  # loads and warms every engine
        self.metrics = DaemonMetrics(runtime.sensor_names)
        self.health = Health(config.health_stale_s)
        self.health.info["bundle"] = bundle_id(self.engines)
        tracker = AvailabilityTracker(runtime.config, config.tracker.hold_s, config.tracker.restart_window)
        wire = WireSchema(runtime.config)
        self._resources: list[Any] = []
        try:
            sources = self._sources(runtime, wire)
            sinks = self._sinks()
            flags = (FlagSource(config.flags, tracker, self.metrics.drop, log.info)
                     if config.flags.control or config.flags.file else None)
            if flags is not None:
                self._resources.append(flags)
            self.ops = (OpsServer(config.metrics.host, config.metrics.port, self.metrics, self.health)
                        if config.metrics.enabled else None)
        except BaseException:
            for resource in self._resources:
                resource.close()
            runtime.close()
            raise
        self.loop = SensorLoop(runtime, bundle_id(self.engines), tracker, sources, sinks, self.metrics,
                               self.health, config.loop, flags)
        self._reloading = threading.Lock()
        self._reload_threads: list[threading.Thread] = []

    def _sources(self, runtime: Runtime, wire: WireSchema) -> list[Source]:
        sources: list[Source] = []
        for endpoint in self.config.sources.network:
            sources.append(DatagramSource(endpoint, wire.max_datagram))
            self._resources.append(sources[-1])
        if self.config.sources.replay is not None:
            sources.append(ReplaySource(self.config.sources.replay, runtime.config))
        return sources

    def _sinks(self) -> list[Sink]:
        sinks: list[Sink] = []
        if self.config.sinks.jsonl is not None:
            errors = self.metrics.sink_errors.labels("jsonl")
            jsonl = JsonLinesSink(self.config.sinks.jsonl, lambda exc: errors.inc())
            self.metrics.sink_unwritten.labels("jsonl").set_function(lambda: jsonl.unwritten)
            self.metrics.sink_lost.labels("jsonl").set_function(lambda: jsonl.lost)
            sinks.append(jsonl)
            self._resources.append(jsonl)
        for endpoint in self.config.sinks.datagram:
            sinks.append(DatagramSink(endpoint))
            self._resources.append(sinks[-1])
        return sinks

    @property
    def addresses(self) -> dict[str, Any]:
        """Where everything listens (ports resolved when the config said 0)."""
        out: dict[str, Any] = {"sources": [s.name for s in self.loop.sources]}
        if self.ops is not None:
            out["metrics"] = f"http://{self.config.metrics.host}:{self.ops.port}/metrics"
        if self.loop.flags is not None and self.loop.flags.sock is not None:
            out["control"] = str(self.loop.flags.sock.getsockname())
        return out

    # -- reload ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Load and warm the bundle again off the loop thread, then offer it to the loop."""
        thread = threading.Thread(target=self._reload, name="edgemoe-reload", daemon=True)
        self._reload_threads = [t for t in self._reload_threads if t.is_alive()] + [thread]  # no pile-up
        thread.start()

    def _reload(self) -> None:
        if not self._reloading.acquire(blocking=False):
            log.warning("reload already in progress; SIGHUP ignored")
            return
        try:
            runtime = Runtime.load(self.engines, self.trust)
            if runtime.config.sensors != self.loop.runtime.config.sensors:
                runtime.close()
                raise EdgeMoEError(f"{self.engines}: the new bundle's sensors differ from the serving one; "
                                   "restart the daemon to change the schema")
            self.loop.offer_runtime(runtime, bundle_id(self.engines))
            self.metrics.reloads.labels("ok").inc()
            log.info("reloaded %s (warm)", self.engines)
        except EdgeMoEError as exc:
            self.metrics.reloads.labels("failed").inc()
            log.error("reload refused, keeping the serving bundle: %s", exc)
        finally:
            self._reloading.release()

    # -- process lifecycle ----------------------------------------------------------------------
    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads; a wake-up socket interrupts the loop's wait at once."""
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wake = (reader, writer)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self.loop.add_waker(reader.fileno())
        signal.signal(signal.SIGTERM, lambda *_: self.loop.stop())
        signal.signal(signal.SIGINT, lambda *_: self.loop.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.reload())

    def run(self, max_seconds: float | None = None) -> dict[str, Any]:
        try:
            self.loop.run(max_seconds)
        finally:
            self.close()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {"predictions": self.loop.predictions, "prewarms": self.loop.prewarms, "datagrams": self.loop.datagrams,
                "drops": self.metrics.drop_counts(), "bundle": self.loop.bundle_id,
                "unwritten": sum(getattr(sink, "unwritten", 0) for sink in self.loop.sinks),
                "lost": sum(getattr(sink, "lost", 0) for sink in self.loop.sinks)}

    def close(self) -> None:
        for thread in self._reload_threads:
            thread.join(timeout=30)
        self.loop.swap_if_offered()
        self.loop.close()
        if self.ops is not None:
            self.ops.close()
        self.loop.runtime.close()
