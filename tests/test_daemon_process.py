"""``edgemoe run`` as a real subprocess: SIGTERM under load, SIGHUP reload, socket fuzz, no torch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edgemoe.core.schema import ModelConfig
from edgemoe.daemon.client import FrameSender
from edgemoe.daemon.wire import HEADER_SIZE, encode
from tests.daemon_helpers import (
    ROOT, DaemonProcess, daemon_config, metric, read_records, send_at_rates,
)
from tests.polling import HANG_S, wait_for

DAEMON_MODULES = ["edgemoe.cli", "edgemoe.recipes.run", "edgemoe.daemon.service", "edgemoe.daemon.loop",
                  "edgemoe.daemon.sources", "edgemoe.daemon.flags", "edgemoe.daemon.client"]


def test_the_run_verb_and_daemon_never_import_torch() -> None:
    code = ("import sys, importlib\n"
            f"for m in {DAEMON_MODULES!r}: importlib.import_module(m)\n"
            "from edgemoe.cli import build_parser\n"
            "build_parser(['run', 'x', '--config', 'y'])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=HANG_S)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_bad_config_stops_at_start_naming_the_key(tmp_path: Path, engines_dir: Path) -> None:
    config = daemon_config(tmp_path, loop={"schedule": "sometimes"})
    out = subprocess.run([sys.executable, "-m", "edgemoe.cli", "run", str(engines_dir), "--config", str(config)],
                         capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         timeout=HANG_S)
    assert out.returncode == 2
    assert "ConfigError" in out.stderr and "key 'loop.schedule'" in out.stderr


def test_sigterm_under_load_keeps_every_computed_prediction(tmp_path: Path, engines_dir: Path,
                                                            config: ModelConfig) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    sink = {"jsonl": {"path": str(tmp_path / "pred.jsonl"), "flush_every": 64},
            "datagram": [{"port": listener.getsockname()[1]}]}
    daemon = DaemonProcess(engines_dir, daemon_config(tmp_path, sinks=sink))
    try:
        stop_sending = threading.Event()

        def flood() -> None:
            with FrameSender(daemon.udp, config.sensor_names) as sender:
                while not stop_sending.is_set():
                    send_at_rates(sender, config, 0.2, scale=10)

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        wait_for(lambda: metric(daemon.ready["metrics"], "edgemoe_predictions_total") > 20, what="20 predictions")
        daemon.signal(signal.SIGTERM)  # mid-flood, with up to 63 records buffered in the sink
        summary, err = daemon.stop()
        stop_sending.set()
        sender.join()
    finally:
        daemon.kill()
    records = read_records(tmp_path / "pred.jsonl")
    assert summary["predictions"] > 20
    assert len(records) == summary["predictions"], err
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert summary["torch_imported"] is False
    published = []
    try:
        while True:
            published.append(json.loads(listener.recv(65536))["seq"])
    except TimeoutError:
        pass
    listener.close()
    assert published and set(published) <= {r["seq"] for r in records}


def test_sighup_reloads_a_warm_bundle_without_losing_a_frame(tmp_path: Path, engines_dir: Path,
                                                             config: ModelConfig) -> None:
    for name in ("build_a", "build_b"):
        shutil.copytree(engines_dir, tmp_path / name)
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "build_a")
    daemon = DaemonProcess(current, daemon_config(tmp_path))
    try:
        with FrameSender(daemon.udp, config.sensor_names) as sender:
            send_at_rates(sender, config, 1.0)
            link = tmp_path / "next"
            link.symlink_to(tmp_path / "build_b")
            os.replace(link, current)  # atomic repoint, then ask for a reload
            daemon.signal(signal.SIGHUP)
            hup = time.monotonic()
            reloaded = lambda: metric(daemon.ready["metrics"], "edgemoe_reloads_total", 'result="ok"') == 1  # noqa: E731
            while not reloaded():  # keep the frames coming however long the reload takes here
                assert time.monotonic() < hup + 120, "no reload within 120 s"
                send_at_rates(sender, config, 0.2)
            send_at_rates(sender, config, 0.5)
        summary, err = daemon.stop()
    finally:
        daemon.kill()
    records = read_records(tmp_path / "pred.jsonl")
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    bundles = [r["bundle"] for r in records]
    switch = bundles.index("build_b")
    assert set(bundles[:switch]) == {"build_a"} and set(bundles[switch:]) == {"build_b"}, err
    # the loop kept predicting while the new bundle loaded and warmed off the loop thread: its
    # longest pause is a small part of the reload (a reload on the loop would be one pause as long
    # as the reload itself), measured in the same run, so machine load scales both alike
    reload_s = records[switch]["mono"] - hup
    during = [r["mono"] for r in records if hup <= r["mono"] <= records[switch]["mono"]]
    assert len(during) >= 3, f"{len(during)} predictions during a {reload_s:.2f} s reload"
    assert np.diff(during).max() < 0.5 * reload_s, (np.diff(during).max(), reload_s)


def test_fuzzed_datagrams_over_a_real_socket_are_all_counted(tmp_path: Path, engines_dir: Path,
                                                             config: ModelConfig) -> None:
    rng = np.random.default_rng(5)
    daemon = DaemonProcess(engines_dir, daemon_config(tmp_path))
    sent = 0
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(1500):
            kind = i % 3
            if kind == 0:
                datagram = rng.bytes(int(rng.integers(0, 2000)))
            else:
                sensor = int(rng.integers(0, 6))
                shape = config.sensors[sensor].shape if sensor < 4 else (3,)
                datagram = bytearray(encode(sensor, int(rng.integers(0, 50)), 0,
                                            rng.standard_normal(shape).astype(np.float32)))
                if kind == 2:  # flip a few header bytes
                    for pos in rng.integers(0, HEADER_SIZE, 3):
                        datagram[pos] = int(rng.integers(0, 256))
                datagram = bytes(datagram)
            sock.sendto(datagram, daemon.udp)
            sent += 1
            if sent % 25 == 0:  # let the daemon drain: a full socket buffer drops datagrams in the kernel
                wait_for(lambda: metric(daemon.ready["metrics"], "edgemoe_datagrams_total") >= sent,
                         what=f"{sent} datagrams counted")
        sock.close()
        wait_for(lambda: metric(daemon.ready["metrics"], "edgemoe_datagrams_total") >= sent,
                 what=f"{sent} datagrams counted")
        with urllib.request.urlopen(daemon.ready["metrics"], timeout=HANG_S) as resp:
            text = resp.read().decode()
        summary, err = daemon.stop()
    finally:
        daemon.kill()
    frames = sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("edgemoe_frames_total{"))
    assert summary["datagrams"] == sent
    assert frames + sum(summary["drops"].values()) - summary["drops"].get("missed_tick", 0) == sent
    assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_is_valid() -> None:
    out = subprocess.run(["systemd-analyze", "verify", str(ROOT / "scripts" / "edgemoe-daemon.service")],
                         capture_output=True, text=True)
    # the only complaint allowed here is that the install target does not exist on this machine
    problems = [line for line in out.stderr.splitlines() if line.strip() and "is not executable" not in line]
    assert not problems, out.stderr
