"""Errors users read. Each names what was wrong and where (sensor, stage, key, file)."""


class EdgeMoEError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(EdgeMoEError):
    """A model, daemon or target config is invalid; the message names the key."""


class DatasetError(EdgeMoEError):
    """A dataset file is malformed; the message names the file, split and sensor."""


class FrameError(EdgeMoEError):
    """A sensor frame handed to the runtime has the wrong shape or dtype."""


class BundleError(EdgeMoEError):
    """A model or engine bundle is missing a file, fails a checksum or mismatches the schema."""


class EngineError(EdgeMoEError):
    """An engine failed to load, bind or run; the message names the stage."""
