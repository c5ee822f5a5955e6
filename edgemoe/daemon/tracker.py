"""Which sensors are available right now, with hysteresis so a flapping sensor cannot thrash.

A sensor is *raw-available* at time ``now`` when its latest accepted frame arrived less than its
deadline ago (``SensorSpec.deadline_s`` = two nominal periods) and was well-formed and finite.
External flags win: ``off`` makes it unavailable whatever arrives, ``on`` ignores the deadline
(the last good frame is used however old), ``auto`` (default) is the freshness rule.

Hysteresis: the *published* state of a sensor changes at most once per ``hold_s`` seconds. A raw
change at ``t`` is published at ``max(t, last_change + hold_s)``, so:

- the mask follows a sensor's real state within ``deadline_s + hold_s``;
- the number of mask switches over ``T`` seconds is at most ``M * (T / hold_s + 1)`` for ``M``
  sensors, however fast they flap.

While a sensor is held on although its raw state is off, its last good (finite) frame is used.
All times are ``time.monotonic()`` seconds (injected, for tests). Sequence numbers: a frame whose
sequence number equals the last accepted one is a duplicate, a smaller one is out of order; both
are dropped, unless the sensor had gone stale or the number jumped back by more than
``restart_window`` (the sender restarted), in which case it is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from edgemoe.core.mask import Mask, is_present, mask_of
from edgemoe.core.schema import ModelConfig
from edgemoe.daemon.wire import Frame

DUPLICATE = "duplicate"
OUT_OF_ORDER = "out_of_order"
NON_FINITE = "non_finite"
TRACKER_REASONS = (DUPLICATE, OUT_OF_ORDER, NON_FINITE)


class Flag(str, Enum):
    """An operator's or health monitor's override for one sensor."""

    auto = "auto"
    on = "on"
    off = "off"


@dataclass
class _SensorState:
    deadline_s: float
    batch: np.ndarray  # last good frame as a batch of one ``[1, *shape]``, preallocated, copied into
    has_frame: bool = False
    last_seq: int = -1
    last_arrival: float = float("-inf")
    last_bad: float = float("-inf")  # arrival of the latest non-finite frame
    published: bool = False
    last_change: float = float("-inf")
    flag: Flag = Flag.auto

    @property
    def buffer(self) -> np.ndarray:
        """The last good frame, ``[*shape]``."""
        return self.batch[0]


class AvailabilityTracker:
    """Feeds on parsed frames, answers the current mask and the frames to run it on."""

    def __init__(self, config: ModelConfig, hold_s: float, restart_window: int = 1024) -> None:
        self.names = config.sensor_names
        self.hold_s = hold_s
        self.restart_window = restart_window
        self._states = [_SensorState(s.deadline_s, np.zeros((1, *s.shape), np.dtype(s.dtype))) for s in config.sensors]
        # the runtime's trusted input: every sensor's last good frame by index, the same arrays
        # for the tracker's whole life (the runtime reads only the sensors of the mask it is given)
        self.inputs: dict[int, np.ndarray] = {i: state.batch for i, state in enumerate(self._states)}
        self.state_changes = 0  # per-sensor published changes (the bound above)

    def accept(self, frame: Frame, now: float) -> str | None:
        """Take a parsed frame; None if accepted, else the drop reason."""
        state = self._states[frame.sensor]
        stale = now - state.last_arrival > state.deadline_s
        if state.has_frame and not stale and state.last_seq - frame.seq <= self.restart_window:
            if frame.seq == state.last_seq:
                return DUPLICATE
            if frame.seq < state.last_seq:
                return OUT_OF_ORDER
        state.last_seq = frame.seq
        if not np.isfinite(frame.data).all():
            state.last_bad = now
            return NON_FINITE
        np.copyto(state.batch[0], frame.data)
        state.has_frame = True
        state.last_arrival = now
        return None

    def set_flag(self, sensor: int, flag: Flag) -> None:
        self._states[sensor].flag = flag

    def flags(self) -> dict[str, str]:
        return {name: s.flag.value for name, s in zip(self.names, self._states)}

    def raw_available(self, sensor: int, now: float) -> bool:
        state = self._states[sensor]
        if state.flag is Flag.off or not state.has_frame:
            return False
        if state.flag is Flag.on:
            return True
        fresh = now - state.last_arrival <= state.deadline_s
        return fresh and state.last_bad <= state.last_arrival

    def update(self, now: float) -> Mask:
        """Publish each sensor's state under the hold rule; return the published mask."""
        for index, state in enumerate(self._states):
            raw = self.raw_available(index, now)
            forced = state.flag is not Flag.auto
            if raw != state.published and (forced or now - state.last_change >= self.hold_s):
                state.published = raw
                state.last_change = now
                self.state_changes += 1
        return mask_of(i for i, state in enumerate(self._states) if state.published and state.has_frame)

    def frames(self, mask: Mask) -> dict[str, np.ndarray | None]:
        """The last good frame of each published sensor by name (``Runtime.infer``'s input);
        the daemon uses :attr:`inputs` with ``Runtime.run`` instead, its frames already checked."""
        return {name: (state.buffer if is_present(mask, i) else None)
                for i, (name, state) in enumerate(zip(self.names, self._states))}

    def published(self) -> dict[str, bool]:
        return {name: s.published for name, s in zip(self.names, self._states)}
