"""The daemon in-process on real loopback sockets: masks follow sensors, flags, replay, sinks, ops."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgemoe.core.errors import ConfigError
from edgemoe.core.schema import ModelConfig
from edgemoe.daemon.client import FrameSender
from edgemoe.daemon.config import DaemonConfig, JsonlSink
from edgemoe.daemon.service import Daemon
from edgemoe.daemon.sinks import JsonLinesSink
from edgemoe.daemon.wire import encode
from tests.daemon_helpers import loop_lag, read_records, send_at_rates
from tests.polling import HANG_S, wait_for

HOLD = 0.2
RATE = 50.0
SLACK = 0.15  # scheduling slack; a loaded machine adds the loop's measured lag (loop_lag) on top


def make_config(tmp: Path, **sections: Any) -> DaemonConfig:
    data: dict[str, Any] = {
        "sources": {"network": [{"port": 0}]},
        "sinks": {"jsonl": {"path": str(tmp / "pred.jsonl")}},
        "metrics": {"port": 0},
        "loop": {"schedule": "fixed", "rate_hz": RATE},
        "tracker": {"hold_s": HOLD},
    }
    data.update(sections)
    return DaemonConfig.from_dict(data, "test")


class Running:
    """A Daemon whose loop runs in a thread; ``stop()`` ends it and returns the summary."""

    def __init__(self, engines: Path, config: DaemonConfig) -> None:
        self.daemon = Daemon(engines, config)
        self.summary: dict[str, Any] = {}
        self.thread = threading.Thread(target=lambda: self.summary.update(self.daemon.run()), daemon=True)
        self.thread.start()

    @property
    def udp(self) -> tuple[str, int]:
        return self.daemon.loop.sources[0].address  # type: ignore[attr-defined,return-value]

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.daemon.ops.port}{path}"  # type: ignore[union-attr]
        try:
            with urllib.request.urlopen(url, timeout=HANG_S) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self) -> dict[str, Any]:
        self.daemon.loop.stop()
        self.thread.join(timeout=HANG_S)
        assert not self.thread.is_alive()
        return self.summary


@pytest.fixture
def running(engines_dir: Path, tmp_path: Path) -> Iterator[Running]:
    daemon = Running(engines_dir, make_config(tmp_path))
    yield daemon
    if daemon.thread.is_alive():
        daemon.stop()


def first_record_after(records: list[dict[str, Any]], t: float,
                       where: Callable[[dict[str, Any]], bool] = lambda r: True) -> dict[str, Any]:
    return next(r for r in records if r["mono"] >= t and where(r))


def within_bound(records: list[dict[str, Any]], event: float, bound_s: float,
                 where: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first record after ``event`` that satisfies ``where``; it must come within ``bound_s``
    plus one tick, the slack and however late the loop ran meanwhile."""
    hit = first_record_after(records, event, where)
    allowed = bound_s + 1 / RATE + SLACK + loop_lag(records, event, hit["mono"], RATE)
    assert hit["mono"] - event <= allowed, (hit["mono"] - event, allowed)
    return hit


def test_mask_follows_a_sensor_dropping_and_returning(running: Running, config: ModelConfig,
                                                      tmp_path: Path) -> None:
    camera = config.sensors[0]
    with FrameSender(running.udp, config.sensor_names) as sender:
        send_at_rates(sender, config, 0.6)
        dropped = time.monotonic()
        send_at_rates(sender, config, 1.0, skip=frozenset({"camera"}))
        back = time.monotonic()
        send_at_rates(sender, config, 0.6)
    running.stop()
    records = read_records(tmp_path / "pred.jsonl")
    assert records[-1]["seq"] == len(records)
    assert any(r["mask"] == 15 for r in records if r["mono"] < dropped)
    # gone within one deadline plus the hold window...
    gone = within_bound(records, dropped, camera.deadline_s + HOLD, lambda r: r["mask"] == 14)
    assert gone["mono"] < back and "camera" not in gone["sensors"]
    assert gone["expected_accuracy"] is not None  # the bundle's table for the degraded mask
    # ...and back within the hold window
    within_bound(records, back, HOLD, lambda r: r["mask"] == 15)


def test_flapping_sensor_does_not_thrash_the_mask(running: Running, config: ModelConfig, tmp_path: Path) -> None:
    duration, flap = 2.0, 0.04
    with FrameSender(running.udp, config.sensor_names) as sender:
        send_at_rates(sender, config, 0.4)
        start = time.monotonic()
        while time.monotonic() < start + duration:
            skip = frozenset({"camera"}) if int((time.monotonic() - start) / flap) % 2 else frozenset()
            send_at_rates(sender, config, flap, skip=skip)
    assert running.get("/metrics")[0] == 200
    running.stop()
    records = read_records(tmp_path / "pred.jsonl")
    masks = [r["mask"] for r in records]
    switches = sum(a != b for a, b in zip(masks, masks[1:]))
    window = records[-1]["mono"] - records[0]["mono"]  # however long the loop actually ran
    assert switches <= config.num_sensors * (window / HOLD + 1)  # the documented bound
    camera_changes = sum((a ^ b) & 1 for a, b in zip(masks, masks[1:]))
    assert camera_changes <= window / HOLD + 1


def test_metrics_and_health_on_localhost(running: Running, config: ModelConfig) -> None:
    with FrameSender(running.udp, config.sensor_names) as sender:
        send_at_rates(sender, config, 0.3)
        sender.send_raw(b"garbage")
        sender.send_raw(encode(7, 1, 0, np.zeros(8, np.float32)))
        # odom (0.4 s deadline) keeps sending, the camera (0.067 s) has stopped: wait until the
        # daemon publishes that, however slowly a loaded machine gets there
        text = ""

        def published() -> bool:
            nonlocal text
            sender.send("odom", np.zeros(config.sensor("odom").shape, np.float32))
            text = running.get("/metrics")[1]
            return ('edgemoe_sensor_available{sensor="camera"} 0.0' in text
                    and 'edgemoe_sensor_available{sensor="odom"} 1.0' in text
                    and 'edgemoe_drops_total{reason="unknown_sensor"} 1.0' in text)

        wait_for(published, what="camera unavailable, odom available, both drops counted")
        code, health = running.get("/healthz")
    assert code == 200 and json.loads(health)["ok"]
    assert 'edgemoe_drops_total{reason="bad_header"} 1.0' in text
    assert "edgemoe_latency_seconds_bucket" in text and "edgemoe_mask_switches_total" in text
    running.stop()
    assert running.daemon.health.status()[0] is False  # a stopped loop is unhealthy


def test_unix_socket_source_is_private_and_works(engines_dir: Path, tmp_path: Path, config: ModelConfig) -> None:
    path = tmp_path / "frames.sock"
    running = Running(engines_dir, make_config(tmp_path, sources={"network": [{"path": str(path)}]}))
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with FrameSender(str(path), config.sensor_names) as sender:
            while not any(r["mask"] == 15 for r in read_records(tmp_path / "pred.jsonl")):
                send_at_rates(sender, config, 0.2)  # until the loop, however slow, has predicted from it
    finally:
        running.stop()
    assert not path.exists()


def test_control_socket_and_flags_file_force_sensors(engines_dir: Path, tmp_path: Path,
                                                     config: ModelConfig) -> None:
    flags_file = tmp_path / "flags.yaml"
    running = Running(engines_dir, make_config(
        tmp_path, flags={"control": {"port": 0}, "file": str(flags_file), "poll_s": 0.05}))
    control = running.daemon.loop.flags.sock.getsockname()  # type: ignore[union-attr]
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with FrameSender(running.udp, config.sensor_names) as sender:
            send_at_rates(sender, config, 0.3)
            ctl.sendto(json.dumps({"sensor": "scan", "flag": "off"}).encode(), control)
            ctl.sendto(b"{not json", control)
            t_ctl = time.monotonic()
            send_at_rates(sender, config, 0.3)
            flags_file.write_text(yaml.safe_dump({"scan": "auto", "imu": "off"}))
            t_file = time.monotonic()
            send_at_rates(sender, config, 0.4)
    finally:
        ctl.close()
        summary = running.stop()
    records = read_records(tmp_path / "pred.jsonl")
    # a control datagram takes effect at the next tick, a flags file at the next poll (0.05 s)
    forced = within_bound(records, t_ctl, 0.0, lambda r: "scan" not in r["sensors"])
    assert all("scan" not in r["sensors"] for r in records if forced["mono"] <= r["mono"] < t_file)
    within_bound(records, t_file, 0.05, lambda r: "imu" not in r["sensors"] and "scan" in r["sensors"])
    assert summary["drops"].get("bad_control") == 1


def test_replay_plays_the_dataset_with_scripted_dropouts(engines_dir: Path, dataset_dir: Path,
                                                         tmp_path: Path) -> None:
    replay = {"dataset": str(dataset_dir), "sample_period_s": 0.1,
              "dropouts": [{"sensor": "camera", "start_s": 0.5, "end_s": 1.0},
                           {"sensor": "odom", "start_s": 0.3, "end_s": 1.2, "mode": "nan"}]}
    config = make_config(tmp_path, sources={"replay": replay}, tracker={"hold_s": 0.1})
    daemon = Daemon(engines_dir, config)
    summary = daemon.run(max_seconds=1.6)
    records = read_records(tmp_path / "pred.jsonl")
    assert summary["predictions"] == len(records) > 0
    assert summary["drops"]["non_finite"] > 0
    masks = {r["mask"] for r in records}
    assert 15 in masks and any(not m & 1 for m in masks) and any(not m & 8 for m in masks)


def test_jsonl_sink_rotates_by_size(tmp_path: Path) -> None:
    sink = JsonLinesSink(JsonlSink(path=tmp_path / "p.jsonl", max_bytes=1024, backups=2))
    for i in range(100):
        sink.write(json.dumps({"seq": i, "pad": "x" * 40}).encode() + b"\n")
    sink.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["p.jsonl", "p.jsonl.1", "p.jsonl.2"]
    assert all(f.stat().st_size <= 1024 for f in files)
    last = [json.loads(line)["seq"] for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert last[-1] == 99


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'loop.rate_hz'"):
        make_config(tmp_path, loop={"rate_hz": -1})
    with pytest.raises(ConfigError, match=r"key 'sources.network.0'.*not loopback"):
        make_config(tmp_path, sources={"network": [{"host": "0.0.0.0", "port": 9400}]})
    with pytest.raises(ConfigError, match=r"key 'sinks.jsonl.rotate'"):
        make_config(tmp_path, sinks={"jsonl": {"path": "x", "rotate": 1}})
    with pytest.raises(ConfigError, match=r"key 'sources'"):
        make_config(tmp_path, sources={})


def test_prewarm_runs_before_ticks_and_writes_nothing(engines_dir: Path, tmp_path: Path, config: ModelConfig) -> None:
    daemon = Running(engines_dir, make_config(tmp_path, loop={"schedule": "fixed", "rate_hz": RATE, "prewarm_ms": 5}))
    with FrameSender(daemon.udp, config.sensor_names) as sender:
        send_at_rates(sender, config, 1.0)
    summary = daemon.stop()
    records = read_records(tmp_path / "pred.jsonl")
    assert summary["prewarms"] > 0  # every tick with a mask is prewarmed, scheduling allowing
    assert len(records) == summary["predictions"]  # a prewarm's answer is never written


def test_prewarm_must_fit_in_the_tick(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prewarm_ms"):
        make_config(tmp_path, loop={"schedule": "fixed", "rate_hz": 100, "prewarm_ms": 10})
    with pytest.raises(ConfigError, match="prewarm_ms"):
        make_config(tmp_path, loop={"schedule": "on_arrival", "prewarm_ms": 1})
