"""The embedded default dataset: a seeded synthetic 4-sensor robot.

The class is three hidden binary factors ``(b0, b1, b2)`` (8 classes). Each sensor renders two of
them, with nuisance jitter and noise, so evidence is partly redundant (every factor is seen by at
least two sensors) and partly complementary (no single sensor sees all three):

=======  ===========  ==========================================================
sensor   factors      rendering
=======  ===========  ==========================================================
camera   b0, b1       a blob left/right (b0), elongated along x or y (b1)
scan     b1, b2       a range bump near/far in angle (b1), narrow/wide (b2)
imu      b2, b0       oscillation slow/fast (b2), dominant axis x or z (b0)
odom     b0, b2       a noisy linear code of b0 and b2 among distractor values
=======  ===========  ==========================================================

Losing one sensor therefore costs some accuracy, losing all but one costs more, and no single
loss is fatal. Works for any config whose sensors match the default robot's names and shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgemoe.core.errors import ConfigError
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split, save_split

# The class factors each sensor renders (the table above).
SEES = {"camera": (0, 1), "scan": (1, 2), "imu": (2, 0), "odom": (0, 2)}
SPLITS = {"train": 6000, "val": 1500, "test": 2000}
NOISE = {"camera": 0.55, "scan": 0.5, "imu": 0.9, "odom": 1.2}
CHUNK_VALUES = 1 << 24  # float64 values rendered at once (128 MiB)


def _factors(labels: np.ndarray) -> np.ndarray:
    """[N] labels -> [N, 3] signs in {-1, +1}."""
    return (((labels[:, None] >> np.arange(3)) & 1) * 2 - 1).astype(np.float32)


def _camera(f: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """One blob per image, seen by every channel with its own gain (a coloured blob) and its own
    pixel noise; rendered in chunks so a large camera never needs more than a chunk in float64."""
    channels, h, w = shape
    n = f.shape[0]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = w / 2 + f[:, 0] * w / 5 + rng.normal(0, w / 12, n)
    cy = h / 2 + rng.normal(0, h / 8, n)
    sx = np.where(f[:, 1] > 0, w / 5, w / 12) * rng.uniform(0.8, 1.2, n)
    sy = np.where(f[:, 1] > 0, h / 12, h / 5) * rng.uniform(0.8, 1.2, n)
    gains = np.linspace(1.0, 0.6, channels, dtype=np.float32)[None, :, None, None]
    out = np.empty((n, channels, h, w), np.float32)
    chunk = max(1, CHUNK_VALUES // (channels * h * w))
    for i in range(0, n, chunk):
        part = slice(i, i + chunk)
        blob = np.exp(
            -((xx[None] - cx[part, None, None]) ** 2) / (2 * sx[part, None, None] ** 2)
            - ((yy[None] - cy[part, None, None]) ** 2) / (2 * sy[part, None, None] ** 2)
        )
        noise = rng.normal(0, NOISE["camera"], (blob.shape[0], channels, h, w))
        out[part] = gains * blob[:, None] + noise
    return out


def _scan(f: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A wall with one bump; every channel (e.g. one per echo) sees it with its own noise."""
    channels, length = shape
    n = f.shape[0]
    angle = np.linspace(-1, 1, length, dtype=np.float32)
    wall = 2.0 + 0.3 * rng.normal(0, 1, (n, 1)) * angle[None] ** 2
    centre = 0.45 * f[:, 1] + rng.normal(0, 0.12, n)
    width = np.where(f[:, 2] > 0, 0.25, 0.08) * rng.uniform(0.8, 1.25, n)
    bump = np.exp(-((angle[None] - centre[:, None]) ** 2) / (2 * width[:, None] ** 2))
    ranges = (wall - 1.0 * bump)[:, None] + rng.normal(0, NOISE["scan"], (n, channels, length))
    return ranges.astype(np.float32)


def _imu(f: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    channels, steps = shape
    n = f.shape[0]
    t = np.arange(steps, dtype=np.float32) / steps
    freq = np.where(f[:, 2] > 0, 6.0, 2.5) * rng.uniform(0.85, 1.15, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    wave = np.sin(2 * np.pi * freq[:, None] * t[None] + phase[:, None])
    gains = np.full((n, channels), 0.2, np.float32)
    gains[:, 0] = np.where(f[:, 0] > 0, 1.0, 0.25)
    gains[:, min(2, channels - 1)] = np.where(f[:, 0] > 0, 0.25, 1.0)
    window = gains[:, :, None] * wave[:, None, :]
    window += rng.normal(0, NOISE["imu"], window.shape)
    return window.astype(np.float32)


def _odom(f: np.ndarray, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    (features,) = shape
    n = f.shape[0]
    code = np.random.default_rng(1234).normal(0, 1, (2, features)).astype(np.float32)
    vec = f[:, [0, 2]] @ code + rng.normal(0, NOISE["odom"], (n, features))
    return vec.astype(np.float32)


RENDERERS = {"camera": _camera, "scan": _scan, "imu": _imu, "odom": _odom}


def generate_split(config: ModelConfig, n: int, seed: int) -> Split:
    """``n`` samples with balanced labels; the same seed gives the same bytes."""
    unknown = [s.name for s in config.sensors if s.name not in RENDERERS]
    if unknown or config.num_classes != 8:
        raise ConfigError(
            f"the synthetic generator renders sensors {sorted(RENDERERS)} with 8 classes; "
            f"config '{config.name}' has sensors {list(config.sensor_names)} and "
            f"{config.num_classes} classes (unknown: {unknown}). Bring your own data in the "
            "on-disk format instead (see README)."
        )
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % config.num_classes).astype(np.int64)
    factors = _factors(labels)
    frames = {}
    for spec in config.sensors:
        frames[spec.name] = RENDERERS[spec.name](factors, rng, spec.shape)
    return Split(frames=frames, label=labels, mask=None)


def write_synthetic(config: ModelConfig, out: Path, seed: int = 0, scale: float = 1.0) -> dict[str, int]:
    """Write train/val/test ``.npz`` files; ``scale`` shrinks the splits (for tests)."""
    sizes = {name: max(config.num_classes * 4, int(count * scale)) for name, count in SPLITS.items()}
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, count) in enumerate(sizes.items()):
        save_split(generate_split(config, count, seed * 1000 + i), out / f"{name}.npz")
    return sizes
