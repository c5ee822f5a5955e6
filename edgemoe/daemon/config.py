"""The daemon's YAML config, validated at start; every error names the key and the fix.

Secure defaults: sockets bind to 127.0.0.1, Unix sockets are created with mode 0600, metrics
listen on 127.0.0.1. Binding elsewhere requires ``allow_remote: true`` on that section.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from edgemoe.core.config import StrictModel, load_yaml_as, validate_as


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Endpoint(StrictModel):
    """A UDP ``host:port`` or a Unix datagram socket ``path`` (exactly one)."""

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=0, le=65535)
    path: Path | None = None
    mode: int = Field(0o600, ge=0, le=0o777)  # Unix socket file permissions
    allow_remote: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Endpoint:
        if (self.port is None) == (self.path is None):
            raise ValueError("give exactly one of 'port' (UDP) or 'path' (Unix datagram socket)")
        if self.port is not None and not self.allow_remote and not _loopback(self.host):
            raise ValueError(f"host '{self.host}' is not loopback; set allow_remote: true to expose it")
        return self


class Dropout(StrictModel):
    """A scripted outage in a replay: ``sensor`` sends nothing (or NaN frames) in [start_s, end_s)."""

    sensor: str
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    mode: Literal["silent", "nan"] = "silent"

    @model_validator(mode="after")
    def _ordered(self) -> Dropout:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s {self.end_s} must be after start_s {self.start_s}")
        return self


class Replay(StrictModel):
    """Play a dataset split at the sensors' nominal rates."""

    dataset: Path
    split: str = "test"
    sample_period_s: float = Field(0.5, gt=0)  # how long each recorded sample is shown
    speed: float = Field(1.0, gt=0)
    repeat: bool = True
    dropouts: tuple[Dropout, ...] = ()


class Sources(StrictModel):
    network: tuple[Endpoint, ...] = ()
    replay: Replay | None = None

    @model_validator(mode="after")
    def _some(self) -> Sources:
        if not self.network and self.replay is None:
            raise ValueError("configure at least one source: 'network' endpoints or 'replay'")
        return self


class Flags(StrictModel):
    """External availability flags: a control socket and/or a flags file (YAML ``sensor: on|off|auto``)."""

    control: Endpoint | None = None
    file: Path | None = None
    poll_s: float = Field(0.5, gt=0)


class Tracker(StrictModel):
    hold_s: float = Field(0.5, ge=0)  # hysteresis: min seconds between state changes of a sensor
    restart_window: int = Field(1024, ge=1)


class Loop(StrictModel):
    schedule: Literal["fixed", "on_arrival"] = "fixed"
    rate_hz: float = Field(20.0, gt=0, le=10000)  # fixed: tick rate
    max_rate_hz: float = Field(200.0, gt=0)  # on_arrival: at most this many predictions/s
    max_batch: int = Field(256, ge=1)  # datagrams read per source per wake-up
    # fixed: an untimed call this long before each tick, so the tick's call finds caches warm
    # (docs/daemon.md, "Latency at the sensor rate"); costs one more inference per tick
    prewarm_ms: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _prewarm_fits(self) -> Loop:
        if self.prewarm_ms and self.schedule != "fixed":
            raise ValueError("prewarm_ms applies to the fixed schedule only")
        if self.prewarm_ms * 1e-3 >= 1.0 / self.rate_hz:
            raise ValueError(f"prewarm_ms {self.prewarm_ms:g} must be shorter than the tick period "
                             f"{1e3 / self.rate_hz:g} ms (rate_hz {self.rate_hz:g})")
        return self


class JsonlSink(StrictModel):
    path: Path
    max_bytes: int = Field(50_000_000, ge=1024)
    backups: int = Field(5, ge=0)
    flush_every: int = Field(1, ge=1)  # records between flushes
    # while the disk refuses writes, records wait in memory up to this many bytes; past it the
    # oldest waiting records are dropped (counted as lost), so a long outage cannot exhaust RAM
    max_backlog_bytes: int = Field(64 * 2**20, ge=4096)


class Sinks(StrictModel):
    jsonl: JsonlSink | None = None
    datagram: tuple[Endpoint, ...] = ()


class Metrics(StrictModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
    allow_remote: bool = False

    @model_validator(mode="after")
    def _local(self) -> Metrics:
        if not self.allow_remote and not _loopback(self.host):
            raise ValueError(f"host '{self.host}' is not loopback; set allow_remote: true to expose it")
        return self


class DaemonConfig(StrictModel):
    sources: Sources
    flags: Flags = Flags()
    tracker: Tracker = Tracker()
    loop: Loop = Loop()
    sinks: Sinks = Sinks()
    metrics: Metrics = Metrics()
    health_stale_s: float = Field(2.0, gt=0)  # unhealthy when the loop has not ticked for this long
    trust: Path | None = None  # Ed25519 public key: load (and reload) only bundles it signed

    @classmethod
    def from_dict(cls, data: Any, source: str) -> DaemonConfig:
        return validate_as(cls, data, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> DaemonConfig:
        return load_yaml_as(cls, Path(path), "daemon config")
