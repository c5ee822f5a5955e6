"""Device tests: need a CUDA GPU (and, for most, a real TensorRT). Elsewhere they skip, saying why.

The probe runs in a subprocess (``edgemoe.engines.tensorrt.detect.probe_device``): creating a
TensorRT runtime without a usable GPU can abort the process, which must not take pytest with it.

Run on the device:  ``PYTHONPATH=. python -m pytest -q device_tests``
Environment: ``EDGEMOE_DEVICE_TARGET`` (profile, default x86-gpu; e.g. jetson-agx-orin),
``EDGEMOE_DEVICE_BUNDLE`` (a calibrated model bundle with int8/fp16 variants; default: the test
suite's tiny fp32 bundle, on which int8/fp16 builds skip), ``EDGEMOE_DEVICE_REPORT`` (a folder for
the latency table).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgemoe.engines.tensorrt.detect import Probe, probe_device  # noqa: E402
try:  # the suite's tiny trained model and its bundle (needs torch; a device may have none)
    from tests.conftest import (  # noqa: E402,F401
        bundle_dir as _fixture_bundle_dir, checkpoint, checkpoint_path, config, dataset, dataset_dir,
        tiny_config,
    )
except ImportError as _missing:
    _WHY = f"no EDGEMOE_DEVICE_BUNDLE and the test fixtures cannot train one here ({_missing})"

    @pytest.fixture(scope="session")
    def _fixture_bundle_dir() -> Path:
        pytest.skip(_WHY)


@pytest.fixture(scope="session")
def probe() -> Probe:
    return probe_device()


@pytest.fixture(scope="session")
def gpu(probe: Probe) -> Probe:
    if not probe.gpu:
        pytest.skip(f"needs a CUDA GPU: {probe.reason}")
    return probe


@pytest.fixture(scope="session")
def tensorrt_device(probe: Probe) -> Probe:
    if not probe.gpu:
        pytest.skip(f"needs a CUDA GPU: {probe.reason}")
    if not probe.tensorrt:
        pytest.skip(f"needs TensorRT: {probe.reason}")
    return probe


@pytest.fixture(scope="session")
def device_target() -> str:
    return os.environ.get("EDGEMOE_DEVICE_TARGET", "x86-gpu")


@pytest.fixture(scope="session")
def device_bundle(request: pytest.FixtureRequest, tensorrt_device: Probe) -> Path:
    given = os.environ.get("EDGEMOE_DEVICE_BUNDLE")
    if given:
        return Path(given)
    return Path(request.getfixturevalue("_fixture_bundle_dir"))
