"""Helpers shared by the daemon tests: configs, a daemon subprocess, frames at nominal rates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

from edgemoe.core.schema import ModelConfig
from edgemoe.daemon import client
from edgemoe.daemon.client import FrameSender
from tests.polling import HANG_S

ROOT = Path(__file__).resolve().parent.parent


def daemon_config(tmp: Path, **sections: Any) -> Path:
    """A daemon YAML with a UDP source on a free loopback port and a JSON-lines sink."""
    data: dict[str, Any] = {
        "sources": {"network": [{"port": 0}]},
        "sinks": {"jsonl": {"path": str(tmp / "pred.jsonl")}},
        "metrics": {"port": 0},
        "loop": {"schedule": "fixed", "rate_hz": 50},
        "tracker": {"hold_s": 0.2},
    }
    data.update(sections)
    path = tmp / "daemon.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class DaemonProcess:
    """``edgemoe run`` as a real subprocess; ``ready`` holds the addresses it printed."""

    def __init__(self, engines: Path, config: Path, *extra: str, log: Path | None = None) -> None:
        """``log``: write the daemon's stderr to this file instead of a pipe (long runs, where an
        unread pipe would fill up and block the daemon)."""
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        self.log = log
        stderr = subprocess.PIPE if log is None else open(log, "w")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgemoe.cli", "run", str(engines), "--config", str(config), *extra],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=ROOT)
        if log is not None:
            stderr.close()
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith('{"ready"'):
            self.proc.kill()
            raise RuntimeError(f"daemon did not start: {line}{self.stderr_text()}")
        self.ready = json.loads(line)["ready"]
        source = next(s for s in self.ready["sources"] if s.startswith("udp:"))
        _, host, port = source.split(":")
        self.udp = (host, int(port))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = HANG_S) -> tuple[dict[str, Any], str]:
        """SIGTERM and wait; returns the printed summary and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        err = err if self.log is None else self.stderr_text()
        stopped = [json.loads(line)["stopped"] for line in out.splitlines() if line.startswith('{"stopped"')]
        assert stopped, f"no summary; rc={self.proc.returncode} stderr:\n{err}"
        return stopped[0], err

    def stderr_text(self) -> str:
        """What the daemon wrote to stderr (with a pipe: read to the end, so call it after exit)."""
        if self.log is not None:
            return self.log.read_text()
        return self.proc.stderr.read()  # type: ignore[union-attr]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def metric(url: str, name: str, labels: str = "") -> float:
    """One sample of the daemon's /metrics text (0 when absent), e.g. ``metric(url, "edgemoe_reloads_total",
    'result="ok"')``."""
    with urllib.request.urlopen(url, timeout=HANG_S) as resp:
        text = resp.read().decode()
    key = f"{name}{{{labels}}}" if labels else name
    return next((float(line.split()[-1]) for line in text.splitlines() if line.split(" ")[0] == key), 0.0)


def loop_lag(records: list[dict[str, Any]], start: float, end: float, rate_hz: float) -> float:
    """How late the loop ran in ``[start, end]``: its longest gap between two predictions beyond one
    tick. A latency bound that holds on an idle machine is given this much more on a loaded one (a
    loop that is not scheduled cannot publish), and a bound broken while the loop ran on time still
    fails."""
    monos = [r["mono"] for r in records if start - 1 / rate_hz <= r["mono"] <= end]
    gaps = [b - a for a, b in zip(monos, monos[1:])] or [end - start]
    return max(0.0, max(gaps) - 1 / rate_hz)


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def frames_for(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal(s.shape).astype(np.float32) for s in config.sensors}


def send_at_rates(sender: FrameSender, config: ModelConfig, seconds: float, scale: float = 1.0,
                  skip: frozenset[str] = frozenset()) -> int:
    """Every sensor of ``config`` at ``scale`` x its nominal rate for ``seconds``."""
    rates = {s.name: s.rate_hz for s in config.sensors}
    return client.send_at_rates(sender, frames_for(config), rates, seconds, scale, skip)


class Scrape:
    """One ``GET /metrics`` of the daemon, parsed with prometheus_client's own parser."""

    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``{label value: sample}`` of every sample of ``name`` (e.g. drops by reason)."""
        return {dict(key)[label]: v for (n, key), v in self.samples.items() if n == name and label in dict(key)}
