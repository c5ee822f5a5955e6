"""External availability flags: an operator or a health monitor forces a sensor on, off or auto.

Two ways in, both applied to the tracker, where a flag wins over freshness:

- a control socket (UDP on loopback or a Unix datagram socket): one JSON object per datagram,
  ``{"sensor": "camera", "flag": "off"}``; a malformed one is dropped and counted;
- a flags file, YAML ``{camera: off, scan: auto}``, re-read when its modification time changes;
  sensors it does not name go back to ``auto``.

Parsed with ``json.loads`` / ``yaml.safe_load`` only: nothing received is evaluated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import yaml

from edgemoe.daemon.config import Flags
from edgemoe.daemon.sources import bind_datagram
from edgemoe.daemon.tracker import AvailabilityTracker, Flag

MAX_CONTROL_BYTES = 512
BAD_CONTROL = "bad_control"


class FlagSource:
    """Applies control-socket messages and flags-file changes to a tracker."""

    def __init__(self, flags: Flags, tracker: AvailabilityTracker,
                 on_drop: Callable[[str], None], log: Callable[[str], None]) -> None:
        self.tracker = tracker
        self.on_drop = on_drop
        self.log = log
        self.file = flags.file
        self.poll_s = flags.poll_s
        self.sock = bind_datagram(flags.control, "flags.control") if flags.control else None
        self._control_path = flags.control.path if flags.control else None
        self._mtime: int | None = None
        self._next_poll = 0.0
        self._index = {name: i for i, name in enumerate(tracker.names)}

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock else None

    def receive(self, limit: int = 64) -> None:
        """Apply every pending control message (non-blocking)."""
        if self.sock is None:
            return
        for _ in range(limit):
            try:
                message = self.sock.recv(MAX_CONTROL_BYTES + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if not self._apply_message(message):
                self.on_drop(BAD_CONTROL)

    def _apply_message(self, message: bytes) -> bool:
        if len(message) > MAX_CONTROL_BYTES:
            return False
        try:
            body = json.loads(message)
            sensor, flag = self._index[body["sensor"]], Flag(body["flag"])
        except (ValueError, KeyError, TypeError):
            return False
        self.tracker.set_flag(sensor, flag)
        self.log(f"flag {body['sensor']}={flag.value} (control socket)")
        return True

    def poll_file(self, now: float) -> None:
        """Re-read the flags file when it changed; at most once per ``poll_s``."""
        if self.file is None or now < self._next_poll:
            return
        self._next_poll = now + self.poll_s
        try:
            mtime = os.stat(self.file).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        wanted = self._read_file() if mtime is not None else {}
        if wanted is None:
            self.on_drop(BAD_CONTROL)
            return
        for name, index in self._index.items():
            self.tracker.set_flag(index, wanted.get(name, Flag.auto))
        self.log(f"flags file {self.file}: {self.tracker.flags()}")

    def _read_file(self) -> dict[str, Flag] | None:
        try:
            data = yaml.safe_load(Path(self.file).read_text()) or {}  # type: ignore[arg-type]
            if not isinstance(data, dict):
                raise ValueError("not a mapping")
            # YAML reads bare on/off as booleans
            norm = {str(k): ("on" if v is True else "off" if v is False else str(v)) for k, v in data.items()}
            unknown = set(norm) - set(self._index)
            if unknown:
                raise ValueError(f"unknown sensor(s) {sorted(unknown)}")
            return {k: Flag(v) for k, v in norm.items()}
        except (OSError, ValueError, yaml.YAMLError) as exc:
            self.log(f"flags file {self.file} ignored: {exc}; expected 'sensor: on|off|auto' lines")
            return None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            if self._control_path is not None:
                Path(self._control_path).unlink(missing_ok=True)
