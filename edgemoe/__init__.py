"""edgemoe: a missing-sensor-robust multimodal Mixture-of-Experts, compiled per stage into engines."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgemoe")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"
