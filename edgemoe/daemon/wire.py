"""The frame wire format: one sensor frame per datagram, a fixed 48-byte header then the payload.

Little-endian throughout, so a C/C++ driver can fill a packed struct (see docs/wire-format.md)::

    offset size  field
     0      4    magic        b"EMF1"
     4      1    version      1
     5      1    dtype code   DTYPE_CODES (the payload's element type)
     6      1    ndim         0..4 (number of used entries in dims)
     7      1    flags        0 (reserved)
     8      2    sensor id    u16, the sensor's index in the schema (its mask bit)
    10      2    reserved     0
    12      4    payload len  u32, bytes after the header
    16      8    sequence     u64, per sensor, +1 per frame
    24      8    capture ns   u64, the sender's capture time (informational)
    32     16    dims         4 x u32, unused entries 0
    48      -    payload      C-order array of dims, dtype as coded

:func:`parse` never raises on bad input: it returns a :class:`Frame` or the reason the datagram
was dropped, so the loop can count every datagram and never crash on one.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from edgemoe.core.schema import ModelConfig

MAGIC = b"EMF1"
VERSION = 1
HEADER = struct.Struct("<4sBBBBHHIQQ4I")
HEADER_SIZE = HEADER.size  # 48
MAX_DIMS = 4

# dtype code -> numpy dtype. Codes are part of the wire format: never renumber, only append.
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f2"),
    3: np.dtype("<f8"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("<i4"),
}
CODE_OF: dict[str, int] = {dtype.name: code for code, dtype in DTYPE_CODES.items()}

# Drop reasons of the parser (the tracker and loop add their own).
TOO_LARGE = "too_large"
BAD_HEADER = "bad_header"
UNKNOWN_SENSOR = "unknown_sensor"
BAD_DTYPE = "bad_dtype"
BAD_SHAPE = "bad_shape"
PARSE_REASONS = (TOO_LARGE, BAD_HEADER, UNKNOWN_SENSOR, BAD_DTYPE, BAD_SHAPE)


@dataclass(frozen=True)
class Frame:
    """A well-formed frame of a known sensor. ``data`` is a read-only view into the datagram."""

    sensor: int
    seq: int
    capture_ns: int
    data: np.ndarray


class WireSchema:
    """What the parser accepts, derived from the model schema once at start."""

    def __init__(self, config: ModelConfig) -> None:
        self.shapes = [tuple(s.shape) for s in config.sensors]
        self.codes = [CODE_OF[np.dtype(s.dtype).name] for s in config.sensors]
        self.dtypes = [DTYPE_CODES[c] for c in self.codes]
        self.nbytes = [int(np.prod(shape)) * dt.itemsize for shape, dt in zip(self.shapes, self.dtypes)]
        self.max_datagram = HEADER_SIZE + max(self.nbytes)


def encode(sensor: int, seq: int, capture_ns: int, frame: np.ndarray) -> bytes:
    """One datagram for ``frame`` (any shape of rank <= 4, a dtype in DTYPE_CODES)."""
    frame = np.ascontiguousarray(frame)
    code = CODE_OF.get(frame.dtype.name)
    if code is None or frame.ndim > MAX_DIMS:
        raise ValueError(f"cannot encode dtype {frame.dtype} rank {frame.ndim}; codes {CODE_OF}")
    payload = frame.astype(DTYPE_CODES[code], copy=False).tobytes()
    dims = list(frame.shape) + [0] * (MAX_DIMS - frame.ndim)
    return HEADER.pack(MAGIC, VERSION, code, frame.ndim, 0, sensor, 0, len(payload),
                       seq, capture_ns, *dims) + payload


def parse(datagram: bytes, schema: WireSchema) -> Frame | str:
    """A :class:`Frame`, or the drop reason (one of PARSE_REASONS). Never raises."""
    if len(datagram) > schema.max_datagram:
        return TOO_LARGE
    if len(datagram) < HEADER_SIZE:
        return BAD_HEADER
    magic, version, code, ndim, flags, sensor, reserved, length, seq, capture_ns, *dims = \
        HEADER.unpack_from(datagram)
    if (magic != MAGIC or version != VERSION or flags or reserved or ndim > MAX_DIMS
            or length != len(datagram) - HEADER_SIZE or any(dims[ndim:])):
        return BAD_HEADER
    dtype = DTYPE_CODES.get(code)
    if dtype is not None and length != dtype.itemsize * math.prod(dims[:ndim]):
        return BAD_HEADER  # the payload length disagrees with the header's own dims
    if sensor >= len(schema.shapes):
        return UNKNOWN_SENSOR
    if code != schema.codes[sensor]:
        return BAD_DTYPE
    if tuple(dims[:ndim]) != schema.shapes[sensor]:
        return BAD_SHAPE
    data = np.frombuffer(datagram, schema.dtypes[sensor], offset=HEADER_SIZE).reshape(schema.shapes[sensor])
    return Frame(sensor, seq, capture_ns, data)
