"""A linear-Gaussian model of sensors that fail the way real ones do, with its exact Bayes ceiling.

The class is three hidden binary factors (8 classes, the vertices ``mu_y`` of a cube in R^3), as
in the default robot. Every sample also carries a common-mode disturbance ``z ~ N(0, s_z^2 I_3)``
(vibration, temperature, illumination: one value per sample, felt by every sensor). Sensor ``m``
sees a 3-vector of evidence

    u_m = G_m mu_y + L_m z                 G_m: its gain per factor (how informative it is),
                                           L_m: its loading of the disturbance (how it feels it)

and renders it into its frame through fixed physical patterns ``B_m`` (blobs on the image, bumps
along the scan, sinusoids on IMU axes, a code over the vector's features), with white measurement
noise, in its own units:

    x_m = offset_m + scale_m * (B_m u_m + tau_m * eps),   eps ~ N(0, I)

``B_m`` has orthonormal columns, so ``v_m = B_m^T ((x_m - offset_m) / scale_m) = u_m + tau_m xi``
is a sufficient statistic of the frame and the information of a sensor does not depend on its
frame size (the robot4 and robot4_large shapes have the same ceilings). Given the class, the
frames of any set of sensors are jointly Gaussian with a class-independent covariance, so the
linear discriminant with the true parameters is the Bayes-optimal classifier of every mask:
:meth:`SensorModel.bayes_accuracy` estimates its accuracy by Monte Carlo in the 3-per-sensor
statistic space (no frames rendered).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgemoe.core.errors import ConfigError
from edgemoe.core.mask import all_masks, present
from edgemoe.core.schema import ModelConfig, SensorKind, SensorSpec

FACTORS = 3
NUM_CLASSES = 2**FACTORS
CHUNK_SAMPLES = 2048  # frames rendered at once, so a large camera stays within memory


def class_means() -> np.ndarray:
    """[8, 3] cube vertices in {-1, +1}: bit ``j`` of the class id is factor ``j``."""
    labels = np.arange(NUM_CLASSES)
    return (((labels[:, None] >> np.arange(FACTORS)) & 1) * 2 - 1).astype(np.float64)


@dataclass(frozen=True)
class SensorPhysics:
    """How one sensor sees the world: gains per class factor, disturbance loading (3x3), white
    noise level in pattern space, and the units its frames come in: offset and scale, each a
    scalar or one value per channel (first frame axis: image/scan/imu channels, vector features),
    cycled when the frame has more channels than values."""

    gains: tuple[float, float, float]
    loading: tuple[tuple[float, ...], ...] = ((0.0,) * FACTORS,) * FACTORS
    noise: float = 1.0
    offset: float | tuple[float, ...] = 0.0
    scale: float | tuple[float, ...] = 1.0


@dataclass(frozen=True)
class SensorModel:
    """Every sensor's physics (by sensor name) and the disturbance's standard deviation."""

    sensors: dict[str, SensorPhysics]
    disturbance: float = 0.0
    patterns_seed: int = 7
    _cache: dict[tuple[str, tuple[int, ...]], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def check(self, config: ModelConfig) -> None:
        """Refuse a config this model cannot render, naming the sensor."""
        if config.num_classes != NUM_CLASSES:
            raise ConfigError(f"config '{config.name}': the sensor-failure regimes have {NUM_CLASSES} classes "
                              f"(three binary factors), the config has num_classes={config.num_classes}")
        for spec in config.sensors:
            if spec.name not in self.sensors:
                raise ConfigError(f"config '{config.name}': sensor '{spec.name}' has no physics in this regime "
                                  f"(it models {sorted(self.sensors)})")
            if int(np.prod(spec.shape)) < FACTORS:
                raise ConfigError(f"sensor '{spec.name}': a frame of shape {list(spec.shape)} cannot carry "
                                  f"{FACTORS} independent patterns")

    def evidence(self, labels: np.ndarray, rng: np.random.Generator, names: Sequence[str]) -> dict[str, np.ndarray]:
        """``{sensor: [N, 3]}`` noise-free evidence ``u_m`` for each named sensor (one shared ``z``)."""
        mu = class_means()[labels]
        z = rng.normal(0.0, self.disturbance, (labels.size, FACTORS)) if self.disturbance else np.zeros_like(mu)
        out = {}
        for name in names:
            phys = self.sensors[name]
            out[name] = mu * np.asarray(phys.gains) + z @ np.asarray(phys.loading).T
        return out

    def render(self, spec: SensorSpec, evidence: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[N, *shape] float32 frames of ``spec`` in the sensor's units, rendered in chunks."""
        phys = self.sensors[spec.name]
        basis = self.patterns(spec)  # [D, 3]
        offset, scale = _per_channel(phys.offset, spec.shape), _per_channel(phys.scale, spec.shape)
        out = np.empty((evidence.shape[0], *spec.shape), np.float32)
        for i in range(0, evidence.shape[0], CHUNK_SAMPLES):
            part = evidence[i : i + CHUNK_SAMPLES]
            clean = (part @ basis.T).reshape(-1, *spec.shape)
            noisy = clean + phys.noise * rng.standard_normal(clean.shape)
            out[i : i + CHUNK_SAMPLES] = offset + scale * noisy
        return out

    def patterns(self, spec: SensorSpec) -> np.ndarray:
        """[D, 3] orthonormal rendering patterns of a sensor (fixed per sensor name and shape)."""
        key = (spec.name, spec.shape)
        if key not in self._cache:
            seed = self.patterns_seed + sum(map(ord, spec.name))
            raw = PATTERNS[spec.kind](spec.shape, np.random.default_rng(seed))
            q, _ = np.linalg.qr(raw.reshape(FACTORS, -1).T)
            self._cache[key] = q
        return self._cache[key]

    def bayes_accuracy(self, names: Sequence[str], samples: int = 200_000, seed: int = 12345) -> dict[int, float]:
        """``{mask: accuracy}`` of the Bayes-optimal classifier on every non-empty mask of ``names``
        (bit order = order of ``names``), by Monte Carlo over ``samples`` draws."""
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, NUM_CLASSES, samples)
        u = self.evidence(labels, rng, names)
        stats = {n: u[n] + self.sensors[n].noise * rng.standard_normal(u[n].shape) for n in names}
        result = {}
        for mask in all_masks(len(names)):
            chosen = [names[i] for i in present(mask, len(names))]
            result[mask] = float((self._discriminant(chosen, stats) == labels).mean())
        return result

    def _discriminant(self, names: Sequence[str], stats: dict[str, np.ndarray]) -> np.ndarray:
        """Predicted classes of the LDA rule with the true means and covariance over ``names``."""
        mu = class_means()
        means = np.concatenate([mu * np.asarray(self.sensors[n].gains) for n in names], axis=1)  # [8, 3k]
        loads = np.concatenate([np.asarray(self.sensors[n].loading, float) for n in names], axis=0)  # [3k, 3]
        noise = np.concatenate([np.full(FACTORS, self.sensors[n].noise ** 2) for n in names])
        cov = self.disturbance**2 * loads @ loads.T + np.diag(noise)
        weights = np.linalg.solve(cov, means.T)  # [3k, 8]
        bias = -0.5 * np.einsum("ck,kc->c", means, weights)
        x = np.concatenate([stats[n] for n in names], axis=1)
        return (x @ weights + bias).argmax(1)


def _per_channel(value: float | tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    """A scalar, or values cycled over the first frame axis, shaped to broadcast over a frame."""
    values = np.resize(np.asarray(value, np.float64), shape[0]) if np.ndim(value) else np.asarray(value)
    return values.reshape(-1, *[1] * (len(shape) - 1)) if np.ndim(value) else values


def _image_patterns(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Three blobs at fixed places, each with its own colour across the channels."""
    channels, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / np.array([max(h - 1, 1), max(w - 1, 1)])[:, None, None]
    out = np.empty((FACTORS, channels, h, w))
    for j in range(FACTORS):
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.12**2))
        out[j] = rng.uniform(0.5, 1.0, channels)[:, None, None] * blob
    return out


def _scan_patterns(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Three range bumps at fixed bearings and widths, on every echo channel."""
    channels, length = shape
    angle = np.linspace(-1, 1, length)
    centres, widths = rng.uniform(-0.7, 0.7, FACTORS), rng.uniform(0.06, 0.2, FACTORS)
    bumps = np.exp(-((angle[None] - centres[:, None]) ** 2) / (2 * widths[:, None] ** 2))
    return np.repeat(bumps[:, None], channels, axis=1)


def _imu_patterns(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Three oscillations (fixed frequency and phase) spread over the axes with fixed weights."""
    channels, steps = shape
    t = np.arange(steps) / steps
    freqs, phases = rng.uniform(1.5, 8.0, FACTORS), rng.uniform(0, 2 * np.pi, FACTORS)
    waves = np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])
    return rng.normal(0, 1, (FACTORS, channels))[:, :, None] * waves[:, None]


def _vector_patterns(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A fixed random code over the features."""
    return rng.normal(0, 1, (FACTORS, *shape))


PATTERNS = {SensorKind.image: _image_patterns, SensorKind.scan: _scan_patterns,
            SensorKind.imu: _imu_patterns, SensorKind.vector: _vector_patterns}
