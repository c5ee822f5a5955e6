"""A small sender for the frame wire format: what a Python driver or a test uses to feed the daemon.

    sender = FrameSender(("127.0.0.1", 9400), ["camera", "scan", "imu", "odom"])
    sender.send("imu", np.zeros((6, 32), np.float32))

Sequence numbers are kept per sensor; capture time is ``time.monotonic_ns()`` unless given.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from edgemoe.daemon.wire import encode


class FrameSender:
    def __init__(self, address: tuple[str, int] | str, sensor_names: Sequence[str]) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.address = address
        self.sensor_ids = {name: i for i, name in enumerate(sensor_names)}
        self.seq = dict.fromkeys(self.sensor_ids, 0)

    def send(self, sensor: str, frame: np.ndarray, capture_ns: int | None = None) -> int:
        """Send one frame; returns the sequence number used."""
        self.seq[sensor] += 1
        stamp = time.monotonic_ns() if capture_ns is None else capture_ns
        self.send_raw(encode(self.sensor_ids[sensor], self.seq[sensor], stamp, frame))
        return self.seq[sensor]

    def send_raw(self, datagram: bytes) -> None:
        self.sock.sendto(datagram, self.address)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> FrameSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_at_rates(sender: FrameSender, frames: Mapping[str, np.ndarray], rates_hz: Mapping[str, float],
                  seconds: float, scale: float = 1.0, skip: Collection[str] = ()) -> int:
    """Send each sensor's frame at ``scale`` x its rate for ``seconds`` (paced on the monotonic
    clock, catching up after a late wake-up); returns how many datagrams were sent."""
    periods = {name: 1.0 / (rate * scale) for name, rate in rates_hz.items()}
    start = time.monotonic()
    due = dict.fromkeys(periods, start)
    sent = 0
    while (now := time.monotonic()) < start + seconds:
        for name, period in periods.items():
            while due[name] <= now:
                due[name] += period
                if name not in skip:
                    sender.send(name, frames[name])
                    sent += 1
        time.sleep(max(0.0, min(due.values()) - time.monotonic()))
    return sent
