"""Prometheus metrics and the health check, served on localhost from one small HTTP thread.

``GET /metrics`` is the Prometheus text format; ``GET /healthz`` answers 200 with a JSON status
while the loop ticks, 503 once it has not ticked for ``health_stale_s`` (or has stopped).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from edgemoe.core.mask import is_present, mask_label

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class DaemonMetrics:
    """The daemon's counters, in their own registry (no process-global state)."""

    def __init__(self, sensor_names: tuple[str, ...]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("edgemoe_frames", "Frames accepted per sensor", ["sensor"], registry=r)
        self.datagrams = Counter("edgemoe_datagrams", "Datagrams received (accepted or dropped)", registry=r)
        self.drops = Counter("edgemoe_drops", "Datagrams/frames dropped per reason", ["reason"], registry=r)
        self.available = Gauge("edgemoe_sensor_available", "Published availability (1/0)", ["sensor"], registry=r)
        self.mask = Gauge("edgemoe_mask", "Current published sensor mask", registry=r)
        self.switches = Counter("edgemoe_mask_switches", "Changes of the published mask", registry=r)
        self.predictions = Counter("edgemoe_predictions", "Predictions written to the sinks", registry=r)
        # which sensor combinations the robot actually sees: the frequencies that pick hot masks
        # for fused engines ('edgemoe profile ENGINES --frequencies metrics.txt')
        self.mask_predictions = Counter("edgemoe_mask_predictions", "Predictions per sensor mask", ["mask"],
                                        registry=r)
        # a sink that cannot write keeps its records and retries: errors, and how many wait in memory
        self.sink_errors = Counter("edgemoe_sink_errors", "Failed sink writes (records kept, retried)", ["sink"],
                                   registry=r)
        self.sink_unwritten = Gauge("edgemoe_sink_unwritten_records", "Records computed but not yet on disk",
                                    ["sink"], registry=r)
        self.sink_lost = Gauge("edgemoe_sink_lost_records", "Records dropped because the backlog hit its bound",
                               ["sink"], registry=r)
        self.reloads = Counter("edgemoe_reloads", "Engine bundle reloads", ["result"], registry=r)
        self.latency = Histogram("edgemoe_latency_seconds", "Runtime latency per prediction",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self._drop_children: dict[str, Any] = {}
        self._mask_children: dict[int, Any] = {}
        self._names = sensor_names
        self._sensor_frames = [self.frames.labels(n) for n in sensor_names]
        self._sensor_available = [self.available.labels(n) for n in sensor_names]

    def drop(self, reason: str) -> None:
        child = self._drop_children.get(reason)
        if child is None:
            child = self._drop_children[reason] = self.drops.labels(reason)
        child.inc()

    def predicted(self, mask: int, latency_s: float) -> None:
        """One prediction made under ``mask``."""
        child = self._mask_children.get(mask)
        if child is None:
            child = self._mask_children[mask] = self.mask_predictions.labels(mask_label(mask, self._names))
        child.inc()
        self.predictions.inc()
        self.latency.observe(latency_s)

    def frame(self, sensor: int) -> None:
        self._sensor_frames[sensor].inc()

    def set_mask(self, mask: int) -> None:
        self.mask.set(mask)
        for i, gauge in enumerate(self._sensor_available):
            gauge.set(is_present(mask, i))

    def frame_count(self) -> float:
        return sum(c._value.get() for c in self._sensor_frames)

    def drop_counts(self) -> dict[str, float]:
        return {r: c._value.get() for r, c in self._drop_children.items()}


class Health:
    """What /healthz reports; the loop stamps ``last_tick`` every iteration."""

    def __init__(self, stale_s: float) -> None:
        self.stale_s = stale_s
        self.last_tick = time.monotonic()
        self.running = False
        self.info: dict[str, Any] = {}

    def status(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self.last_tick
        ok = self.running and age < self.stale_s
        return ok, {"ok": ok, "running": self.running, "last_tick_age_s": round(age, 4), **self.info}


class OpsServer:
    """``/metrics`` and ``/healthz`` on ``host:port`` (port 0 = any free port, see ``.port``)."""

    def __init__(self, host: str, port: int, metrics: DaemonMetrics, health: Health) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/healthz"):
                    ok, body = health.status()
                    self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
                elif self.path.startswith("/metrics"):
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                else:
                    self._send(404, "text/plain", b"try /metrics or /healthz\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="edgemoe-ops", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
