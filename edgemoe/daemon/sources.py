"""Where frames come from: datagram sockets (UDP on loopback, Unix) and a dataset replay.

Every source hands the loop raw datagrams in the wire format, so a replay exercises exactly the
parser and tracker a live robot does. A source has a file descriptor to wait on (sockets) or a
time at which it next has something (replay).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from edgemoe.core.errors import ConfigError
from edgemoe.core.mask import is_present
from edgemoe.core.schema import ModelConfig
from edgemoe.daemon.config import Endpoint, Replay
from edgemoe.daemon.wire import encode
from edgemoe.data.dataset import load_split


class Source(Protocol):
    name: str

    def fileno(self) -> int | None: ...

    def next_due(self) -> float | None: ...

    def receive(self, now: float, limit: int) -> list[bytes]: ...

    def close(self) -> None: ...


def bind_datagram(endpoint: Endpoint, what: str) -> socket.socket:
    """A non-blocking datagram socket bound per ``endpoint``; Unix sockets get ``endpoint.mode``."""
    if endpoint.path is not None:
        path = Path(endpoint.path)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ConfigError(f"{what}: {path} exists and is not a socket; remove it or pick another path")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        old = os.umask(0o777 & ~endpoint.mode)  # created with the mode, no window with wider rights
        try:
            sock.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, endpoint.mode)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((endpoint.host, int(endpoint.port or 0)))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"{what}: cannot bind {endpoint.host}:{endpoint.port} ({exc}); "
                              "pick a free port") from None
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return sock


def endpoint_label(endpoint: Endpoint, sock: socket.socket) -> str:
    if endpoint.path is not None:
        return f"unix:{endpoint.path}"
    host, port = sock.getsockname()[:2]
    return f"udp:{host}:{port}"


class DatagramSource:
    """Frames from a socket. Reads one byte past the largest valid datagram to spot oversize ones."""

    def __init__(self, endpoint: Endpoint, max_datagram: int) -> None:
        self.endpoint = endpoint
        self.sock = bind_datagram(endpoint, "sources.network")
        self.name = endpoint_label(endpoint, self.sock)
        self._bufsize = max_datagram + 1

    @property
    def address(self) -> tuple[str, int] | str:
        return self.sock.getsockname()

    def fileno(self) -> int | None:
        return self.sock.fileno()

    def next_due(self) -> float | None:
        return None

    def receive(self, now: float, limit: int) -> list[bytes]:
        out = []
        for _ in range(limit):
            try:
                out.append(self.sock.recv(self._bufsize))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ECONNREFUSED echoes on UDP: nothing to read, keep serving
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    break
                continue
        return out

    def close(self) -> None:
        self.sock.close()
        if self.endpoint.path is not None:
            Path(self.endpoint.path).unlink(missing_ok=True)


class ReplaySource:
    """A recorded split played at each sensor's nominal rate, with scripted dropouts.

    Sensor ``i`` emits a frame every ``1 / rate_hz`` seconds (scaled by ``speed``); the frame is
    the one of sample ``floor(t / sample_period_s)``. A sensor the dataset did not record for that
    sample stays silent, as do sensors inside a ``silent`` dropout; a ``nan`` dropout sends NaN.
    """

    def __init__(self, replay: Replay, config: ModelConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = f"replay:{replay.dataset}/{replay.split}"
        self.replay = replay
        split = load_split(Path(replay.dataset) / f"{replay.split}.npz", config)
        self._frames = [np.ascontiguousarray(split.frames[s.name], np.float32) for s in config.sensors]
        self._recorded = split.recorded(config.num_sensors)
        self._periods = [1.0 / (s.rate_hz * replay.speed) for s in config.sensors]
        self._index = {s.name: i for i, s in enumerate(config.sensors)}
        for d in replay.dropouts:
            if d.sensor not in self._index:
                raise ConfigError(f"sources.replay.dropouts: unknown sensor '{d.sensor}' "
                                  f"(schema has {list(self._index)})")
        self._start = clock()
        self._next = [self._start] * len(self._periods)
        self._seq = [0] * len(self._periods)
        self.finished = False

    def fileno(self) -> int | None:
        return None

    def next_due(self) -> float | None:
        return None if self.finished else min(self._next)

    def receive(self, now: float, limit: int) -> list[bytes]:
        out: list[bytes] = []
        for sensor, period in enumerate(self._periods):
            while self._next[sensor] <= now and len(out) < limit:
                due = self._next[sensor]
                self._next[sensor] = max(due + period, now - period)  # never burst after a stall
                datagram = self._emit(sensor, (due - self._start) * self.replay.speed)
                if datagram is not None:
                    out.append(datagram)
        return out

    def _emit(self, sensor: int, t: float) -> bytes | None:
        n = len(self._recorded)
        sample = int(t / self.replay.sample_period_s)
        if sample >= n and not self.replay.repeat:
            self.finished = True
            return None
        sample %= n
        if not is_present(int(self._recorded[sample]), sensor):
            return None
        frame = self._frames[sensor][sample]
        for d in self.replay.dropouts:
            if self._index[d.sensor] == sensor and d.start_s <= t < d.end_s:
                if d.mode == "silent":
                    return None
                frame = np.full_like(frame, np.nan)
        self._seq[sensor] += 1
        return encode(sensor, self._seq[sensor], time.monotonic_ns(), frame)

    def close(self) -> None:
        pass
