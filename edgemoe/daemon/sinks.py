"""Where predictions go: a JSON-lines file with size-based rotation, and a datagram publisher.

Every record carries what downstream code needs to decide how much to trust it: the wall-clock
and monotonic timestamps, the mask and the sensors used, the engines run, the class
probabilities, the latency, and the expected accuracy of this mask from the bundle's evaluation
table (a degraded mask says so).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from edgemoe.daemon.config import Endpoint, JsonlSink
from edgemoe.runtime.runtime import Prediction

MAX_PUBLISH_BYTES = 60_000
log = logging.getLogger("edgemoe.daemon")


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
    """Appends one JSON object per line; rotates ``file -> file.1 -> ... -> file.N`` by size.

    A failed write (disk full, file size limit, I/O error) never raises into the loop: the
    unwritten bytes stay in memory, in order, and every later write retries them, so the file
    resumes exactly where it stopped once the disk takes data again. The memory this takes is
    bounded by ``max_backlog_bytes``: past it the oldest waiting records are dropped whole (never
    the tail of a line already half on disk) and counted in ``lost``, because a robot needs its
    newest predictions more than a daemon killed for its memory. Rotation happens only at a line
    boundary with nothing pending (a file may pass ``max_bytes`` by up to ``flush_every`` records).
    """

    def __init__(self, spec: JsonlSink, on_error: Callable[[OSError], None] | None = None) -> None:
        self.path = Path(spec.path)
        self.max_bytes = spec.max_bytes
        self.backups = spec.backups
        self.flush_every = spec.flush_every
        self.max_backlog_bytes = spec.max_backlog_bytes
        self.on_error = on_error
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: BinaryIO | None = open(self.path, "ab", buffering=0)
        self._size = self._fh.tell()
        self._buffer = bytearray()  # records not yet on disk, oldest first
        self._pending = 0  # records in the buffer
        self._head_on_disk = False  # the buffer's first record is partly written already
        self._failing = False
        self.errors = 0  # failed write/rotate attempts
        self.lost = 0  # records dropped from a full backlog

    @property
    def unwritten(self) -> int:
        """Records computed and handed to this sink but not (completely) on disk yet."""
        return self._pending

    def write(self, line: bytes) -> None:
        if not self._buffer and self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._buffer += line
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()
        if len(self._buffer) > self.max_backlog_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Drop whole records from the front of the backlog until it fits its bound again."""
        keep_from = self._buffer.index(b"\n") + 1 if self._head_on_disk else 0  # finish the half-written one
        cut, dropped = keep_from, 0
        while len(self._buffer) - (cut - keep_from) > self.max_backlog_bytes and cut < len(self._buffer):
            cut = self._buffer.index(b"\n", cut) + 1
            dropped += 1
        del self._buffer[keep_from:cut]
        self._pending -= dropped
        self.lost += dropped
        log.error("%s: backlog over %d bytes; dropped the %d oldest unwritten record(s) (%d lost so far)",
                  self.path, self.max_backlog_bytes, dropped, self.lost)

    def _rotate(self) -> None:
        try:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if self.backups == 0:
                self.path.unlink(missing_ok=True)
            else:
                for i in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{i}")
                    if older.exists():
                        os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            self._open()
        except OSError as exc:
            self._failed(exc)

    def _open(self) -> None:
        self._fh = open(self.path, "ab", buffering=0)
        self._size = self._fh.tell()

    def flush(self) -> None:
        """Write every pending byte; on failure keep what is left for the next call."""
        try:
            if self._fh is None:
                self._open()
            while self._buffer:
                written = self._fh.write(self._buffer)  # type: ignore[union-attr]
                if written:
                    self._head_on_disk = self._buffer[written - 1] != ord("\n")
                del self._buffer[:written]
                self._size += written
        except OSError as exc:
            self._failed(exc)
            return
        if self._failing:
            log.warning("%s: writable again, %d kept record(s) written", self.path, self._pending)
            self._failing = False
        self._pending = 0

    def _failed(self, exc: OSError) -> None:
        if self.on_error is not None:
            self.on_error(exc)
        if not self._failing:  # once per outage, not once per record
            self._failing = True
            log.error("%s: write failed (%s); keeping %d record(s) in memory and retrying",
                      self.path, exc, self._pending)
        self.errors += 1

    def close(self) -> None:
        self.flush()
        if self._buffer:
            log.error("%s: %d record(s) could not be written before exit", self.path, self._pending)
        if self._fh is not None:
            try:
                os.fsync(self._fh.fileno())
            except OSError as exc:
                self._failed(exc)
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
