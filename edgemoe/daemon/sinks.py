"""Where predictions go: a JSON-lines file with size-based rotation, and a datagram publisher.

Every record carries what downstream code needs to decide how much to trust it: the wall-clock
and monotonic timestamps, the mask and the sensors used, the engines run, the class
probabilities, the latency, and the expected accuracy of this mask from the bundle's evaluation
table (a degraded mask says so).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Protocol

from edgemoe.daemon.config import Endpoint, JsonlSink
from edgemoe.runtime.runtime import Prediction

MAX_PUBLISH_BYTES = 60_000


def prediction_record(seq: int, prediction: Prediction, bundle: str) -> dict[str, Any]:
    probs = None if prediction.probs is None else [round(float(p), 6) for p in prediction.probs]
    return {
        "seq": seq,
        "time": time.time(),
        "mono": time.monotonic(),
        "mask": prediction.mask,
        "sensors": list(prediction.sensors),
        "engines": list(prediction.engines),
        "probs": probs,
        "label": prediction.label,
        "latency_ms": round(prediction.latency_s * 1e3, 4),
        "expected_accuracy": prediction.expected_accuracy,
        "missing": prediction.missing,
        "reason": prediction.reason,
        "bundle": bundle,
    }


class Sink(Protocol):
    def write(self, line: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """Appends one JSON object per line; rotates ``file -> file.1 -> ... -> file.N`` by size."""

    def __init__(self, spec: JsonlSink) -> None:
        self.path = Path(spec.path)
        self.max_bytes = spec.max_bytes
        self.backups = spec.backups
        self.flush_every = spec.flush_every
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")
        self._size = self._fh.tell()
        self._pending = 0

    def write(self, line: bytes) -> None:
        if self._size + len(line) > self.max_bytes and self._size > 0:
            self._rotate()
        self._fh.write(line)
        self._size += len(line)
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()

    def _rotate(self) -> None:
        self._fh.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._fh = open(self.path, "ab")
        self._size = 0

    def flush(self) -> None:
        self._fh.flush()
        self._pending = 0

    def close(self) -> None:
        self.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


class DatagramSink:
    """Publishes each record as one datagram (UDP or Unix); a missing listener is not an error."""

    def __init__(self, endpoint: Endpoint) -> None:
        if endpoint.path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.address: Any = str(endpoint.path)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.address = (endpoint.host, endpoint.port)
        self.sock.setblocking(False)
        self.failed = 0

    def write(self, line: bytes) -> None:
        if len(line) > MAX_PUBLISH_BYTES:
            self.failed += 1
            return
        try:
            self.sock.sendto(line, self.address)
        except OSError:  # nobody listening, buffer full: the file sink is the record of truth
            self.failed += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.sock.close()


def encode_record(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()
