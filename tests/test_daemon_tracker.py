"""Availability tracking: freshness deadlines, NaN, sequence numbers, flags, and the hysteresis bound."""

from __future__ import annotations

import numpy as np
import pytest

from edgemoe.core.mask import full_mask
from edgemoe.core.schema import ModelConfig
from edgemoe.daemon.tracker import DUPLICATE, NON_FINITE, OUT_OF_ORDER, AvailabilityTracker, Flag
from edgemoe.daemon.wire import Frame

HOLD = 0.3


def frame(config: ModelConfig, sensor: int, seq: int, value: float = 0.0) -> Frame:
    return Frame(sensor, seq, 0, np.full(config.sensors[sensor].shape, value, np.float32))


def feed_all(tracker: AvailabilityTracker, config: ModelConfig, now: float, seq: int,
             skip: tuple[int, ...] = ()) -> None:
    for i in range(config.num_sensors):
        if i not in skip:
            assert tracker.accept(frame(config, i, seq), now) is None


def test_fresh_sensors_are_available_and_a_silent_one_leaves_after_its_deadline(config: ModelConfig) -> None:
    tracker = AvailabilityTracker(config, hold_s=HOLD)
    assert tracker.update(0.0) == 0
    feed_all(tracker, config, 0.0, 1)
    assert tracker.update(0.0) == full_mask(config.num_sensors)
    camera = config.sensors[0]
    # every sensor but the camera keeps sending; the camera goes quiet at t=0
    t, seq = 0.0, 1
    gone_at = None
    while t < 2.0:
        t += 0.01
        seq += 1
        feed_all(tracker, config, t, seq, skip=(0,))
        if not tracker.update(t) & 1 and gone_at is None:
            gone_at = t
    assert gone_at is not None
    assert gone_at <= camera.deadline_s + HOLD + 0.011
    assert gone_at > camera.deadline_s  # not before it is actually late


def test_nan_frame_makes_a_sensor_unavailable_and_a_good_frame_brings_it_back(config: ModelConfig) -> None:
    tracker = AvailabilityTracker(config, hold_s=0.0)
    feed_all(tracker, config, 0.0, 1)
    assert tracker.accept(frame(config, 2, 2, np.nan), 0.01) == NON_FINITE
    assert not tracker.update(0.01) >> 2 & 1
    assert np.isfinite(tracker.frames(full_mask(4))["imu"]).all()  # the NaN never reached the buffer
    assert tracker.accept(frame(config, 2, 3, 1.0), 0.02) is None
    assert tracker.update(0.02) >> 2 & 1


def test_duplicate_and_out_of_order_sequence_numbers_are_dropped(config: ModelConfig) -> None:
    tracker = AvailabilityTracker(config, hold_s=HOLD, restart_window=100)
    assert tracker.accept(frame(config, 1, 10, 1.0), 0.0) is None
    assert tracker.accept(frame(config, 1, 10, 2.0), 0.001) == DUPLICATE
    assert tracker.accept(frame(config, 1, 9, 3.0), 0.002) == OUT_OF_ORDER
    assert tracker.frames(2)["scan"][0, 0] == 1.0
    # a sender restart (sequence far behind) is accepted, as is anything after the sensor went stale
    assert tracker.accept(frame(config, 1, 1, 4.0), 0.003) == OUT_OF_ORDER  # only 9 behind: reorder
    assert tracker.accept(frame(config, 1, 0, 4.0), 10.0) is None  # stale: a fresh start
    assert tracker.accept(frame(config, 1, 5000, 5.0), 10.01) is None
    assert tracker.accept(frame(config, 1, 2, 6.0), 10.02) is None  # 4998 behind: restart


def test_flags_win_over_freshness(config: ModelConfig) -> None:
    tracker = AvailabilityTracker(config, hold_s=10.0)
    feed_all(tracker, config, 0.0, 1)
    assert tracker.update(0.0) == 15
    tracker.set_flag(0, Flag.off)
    assert tracker.update(0.01) == 14  # forced off at once, despite the hold and a fresh frame
    tracker.set_flag(0, Flag.on)
    assert tracker.update(100.0) & 1  # forced on, long after its deadline (its last good frame)
    tracker.set_flag(0, Flag.auto)
    assert tracker.update(100.01) & 1  # back to auto: the hold keeps it until hold_s has passed...
    assert not tracker.update(110.02) & 1  # ...then freshness decides


@pytest.mark.parametrize("flap_period", [0.01, 0.05, 0.13])
def test_flapping_sensor_switches_at_most_once_per_hold_window(config: ModelConfig, flap_period: float) -> None:
    tracker = AvailabilityTracker(config, hold_s=HOLD)
    duration, step = 5.0, 0.005
    masks, t, seq = [], 0.0, 0
    while t < duration:
        seq += 1
        on = int(t / flap_period) % 2 == 0
        feed_all(tracker, config, t, seq, skip=() if on else (2,))
        masks.append(tracker.update(t))
        t += step
    switches = sum(a != b for a, b in zip(masks, masks[1:]))
    assert switches <= duration / HOLD + 1
    assert tracker.state_changes <= config.num_sensors * (duration / HOLD + 1)


def test_returning_sensor_is_back_within_one_hold_window(config: ModelConfig) -> None:
    tracker = AvailabilityTracker(config, hold_s=HOLD)
    feed_all(tracker, config, 0.0, 1)
    tracker.update(0.0)
    t, seq = 0.0, 1
    while t < 1.0:  # odom silent for a second
        t += 0.01
        seq += 1
        feed_all(tracker, config, t, seq, skip=(3,))
        tracker.update(t)
    assert not tracker.update(t) >> 3 & 1
    back = t
    while not tracker.update(t) >> 3 & 1:
        t += 0.01
        seq += 1
        feed_all(tracker, config, t, seq)
    assert t - back <= HOLD + 0.011


def test_the_runtime_input_is_every_sensors_last_good_frame_as_a_batch_of_one(config: ModelConfig) -> None:
    tracker = AvailabilityTracker(config, hold_s=HOLD)
    inputs = tracker.inputs
    assert [a.shape for a in inputs.values()] == [(1, *s.shape) for s in config.sensors]
    assert tracker.accept(frame(config, 2, 1, 3.0), 0.0) is None
    assert tracker.accept(frame(config, 2, 2, np.nan), 0.01) == NON_FINITE
    assert tracker.inputs is inputs and (inputs[2] == 3.0).all()  # same arrays, last good frame kept
    names = config.sensor_names
    assert (tracker.frames(0b0100)[names[2]] == 3.0).all() and tracker.frames(0b0100)[names[0]] is None
