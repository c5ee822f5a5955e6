"""The frame wire format and the per-datagram path: every datagram is a frame or a counted drop.

The fuzz test drives the real parser and tracker (``SensorLoop.ingest``) with >= 10,000 generated
datagrams — random bytes, valid frames with mutated headers, truncated and oversized ones, NaN
payloads, replayed sequence numbers — and checks each is counted exactly once and nothing raises.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemoe.core.schema import ModelConfig
from edgemoe.daemon.config import Loop
from edgemoe.daemon.loop import SensorLoop
from edgemoe.daemon.metrics import DaemonMetrics, Health
from edgemoe.daemon.tracker import AvailabilityTracker
from edgemoe.daemon.wire import (BAD_DTYPE, BAD_HEADER, BAD_SHAPE, HEADER, HEADER_SIZE, TOO_LARGE,
                                 UNKNOWN_SENSOR, Frame, WireSchema, encode, parse)
from edgemoe.runtime.runtime import Runtime

FUZZ_CASES = 10_000


def test_header_is_48_bytes_little_endian_as_documented() -> None:
    assert HEADER_SIZE == 48
    datagram = encode(2, 7, 123456789, np.ones((6, 32), np.float32))
    assert datagram[:4] == b"EMF1" and datagram[4] == 1 and datagram[5] == 1 and datagram[6] == 2
    assert struct.unpack_from("<H", datagram, 8)[0] == 2
    assert struct.unpack_from("<I", datagram, 12)[0] == 6 * 32 * 4
    assert struct.unpack_from("<QQ", datagram, 16) == (7, 123456789)
    assert struct.unpack_from("<4I", datagram, 32) == (6, 32, 0, 0)
    assert len(datagram) == 48 + 6 * 32 * 4


def test_round_trip_for_every_sensor(config: ModelConfig) -> None:
    schema = WireSchema(config)
    for i, spec in enumerate(config.sensors):
        data = np.arange(np.prod(spec.shape), dtype=np.float32).reshape(spec.shape)
        frame = parse(encode(i, 42, 99, data), schema)
        assert isinstance(frame, Frame)
        assert (frame.sensor, frame.seq, frame.capture_ns) == (i, 42, 99)
        np.testing.assert_array_equal(frame.data, data)


def test_each_kind_of_bad_datagram_has_its_reason(config: ModelConfig) -> None:
    schema = WireSchema(config)
    good = encode(3, 1, 0, np.zeros(8, np.float32))
    assert parse(good + b"\0" * schema.max_datagram, schema) == TOO_LARGE
    assert parse(good[:20], schema) == BAD_HEADER
    assert parse(b"XXXX" + good[4:], schema) == BAD_HEADER
    assert parse(good[:-4], schema) == BAD_HEADER  # payload length disagrees with the header
    short = HEADER.pack(b"EMF1", 1, 1, 1, 0, 3, 0, 16, 1, 0, 8, 0, 0, 0) + bytes(16)
    assert parse(short, schema) == BAD_HEADER  # ... or with the dims (8 float32 need 32 bytes)
    assert parse(encode(9, 1, 0, np.zeros(8, np.float32)), schema) == UNKNOWN_SENSOR
    assert parse(encode(3, 1, 0, np.zeros(8, np.float64))[:HEADER_SIZE + 32], schema) == BAD_HEADER
    assert parse(encode(3, 1, 0, np.zeros(16, np.float16)), schema) == BAD_DTYPE
    assert parse(encode(3, 1, 0, np.zeros((2, 4), np.float32)), schema) == BAD_SHAPE


@pytest.fixture(scope="module")
def sensor_loop(engines_dir: Path) -> Iterator[SensorLoop]:
    runtime = Runtime.load(engines_dir)
    tracker = AvailabilityTracker(runtime.config, hold_s=0.1)
    loop = SensorLoop(runtime, "test", tracker, [], [], DaemonMetrics(runtime.sensor_names),
                      Health(1.0), Loop())
    yield loop
    runtime.close()


def _valid(config: ModelConfig) -> st.SearchStrategy[bytes]:
    def build(sensor: int, seq: int, fill: float) -> bytes:
        shape = config.sensors[sensor].shape
        return encode(sensor, seq, 0, np.full(shape, fill, np.float32))
    return st.builds(build, st.integers(0, config.num_sensors - 1), st.integers(0, 2**64 - 1),
                     st.floats(allow_nan=True, allow_infinity=True, width=32))


def _reshaped(config: ModelConfig) -> st.SearchStrategy[bytes]:
    """A well-formed datagram whose dims are another shape of the same size (bad_shape)."""
    def build(sensor: int, seq: int) -> bytes:
        shape = config.sensors[sensor].shape
        size = int(np.prod(shape))
        other = (size,) if len(shape) > 1 else (2, size // 2)
        return encode(sensor, seq, 0, np.zeros(other, np.float32))
    return st.builds(build, st.integers(0, config.num_sensors - 1), st.integers(0, 2**64 - 1))


def _mutated(config: ModelConfig) -> st.SearchStrategy[bytes]:
    """A valid datagram with header fields overwritten, bytes flipped, or cut/extended."""
    def mutate(datagram: bytes, field: int, value: int, cut: int, extra: bytes) -> bytes:
        fields = list(HEADER.unpack_from(datagram))
        if field == 0:
            fields[0] = value.to_bytes(8, "little")[:4]
        else:
            bits = {1: 8, 2: 8, 3: 8, 4: 8, 5: 16, 6: 16, 7: 32, 8: 64, 9: 64}.get(field, 32)
            fields[field] = value % (1 << bits)
        body = HEADER.pack(*fields) + datagram[HEADER_SIZE:]
        return body[: len(body) - cut] + extra
    return st.builds(mutate, _valid(config), st.integers(0, 13), st.integers(0, 2**64 - 1),
                     st.integers(0, 64), st.binary(max_size=64))


def test_fuzzed_datagrams_never_crash_and_are_each_counted_once(sensor_loop: SensorLoop,
                                                                 config: ModelConfig) -> None:
    metrics = sensor_loop.metrics
    registry = metrics.registry
    seen = []
    max_len = sensor_loop.wire.max_datagram + 64

    def counted() -> float:
        return metrics.frame_count() + sum(metrics.drop_counts().values())

    @settings(max_examples=FUZZ_CASES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=max_len), _valid(config), _mutated(config), _reshaped(config)))
    def check(datagram: bytes) -> None:
        before = counted()
        now = len(seen) * 1e-3
        sensor_loop.ingest(datagram, now)
        sensor_loop.tracker.update(now)
        seen.append(1)
        assert counted() == before + 1

    check()
    assert len(seen) >= FUZZ_CASES
    assert registry.get_sample_value("edgemoe_datagrams_total") == len(seen)
    drops = metrics.drop_counts()
    # the generators reach every kind of outcome
    for reason in (TOO_LARGE, BAD_HEADER, UNKNOWN_SENSOR, BAD_DTYPE, BAD_SHAPE, "non_finite"):
        assert drops.get(reason, 0) > 0, (reason, drops)
    # after all that, the loop still predicts from whatever is fresh
    sensor_loop.predict(len(seen) * 1e-3)
