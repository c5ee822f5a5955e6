"""Soak the daemon under injected faults and check it loses nothing, counts every drop and leaks
nothing.

A real ``edgemoe run`` process on loopback sockets the OS picks (UDP frames in, metrics over
HTTP, a JSON-lines sink on disk) gets every sensor at its nominal rate for the whole run and, in
turn: a 10x flood, a flapping sensor (on/off every 50-500 ms), sender restarts (sequence reset),
``capture_ns`` clock jumps, malformed datagrams of every drop category of docs/wire-format.md,
the CPU starved by busy processes, the sink's file made unwritable (RLIMIT_FSIZE, as a full disk)
and restored, and SIGHUP reloads every few minutes, one of them to a tampered bundle. Then it
reads the daemon's own counters and the JSONL file and checks: no prediction lost, every drop
counted by reason as sent, the tampered reload refused, mask switches within the hysteresis
bound, file descriptors flat; and reports latency and deadline misses per phase against the
unloaded first phase.

    PYTHONPATH=. python scripts/soak_daemon.py ENGINES --minutes 60 --md benchmarks/results/daemon_soak.md
    PYTHONPATH=. python scripts/soak_daemon.py ENGINES --minutes 2 --json soak.json   # the CI version

Every loop is bounded by the phase clock; busy-load processes stop themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgemoe.core.bundle import read_engine_manifest  # noqa: E402
from edgemoe.core.schema import ModelConfig  # noqa: E402
from edgemoe.daemon.client import FrameSender  # noqa: E402
from edgemoe.daemon.wire import HEADER, HEADER_SIZE, MAGIC, VERSION, WireSchema, encode  # noqa: E402
from tests.daemon_helpers import DaemonProcess, Scrape, frames_for, read_records  # noqa: E402

RATE_HZ = 20.0  # the loop's fixed schedule
HOLD_S = 0.5
HIGH_SEQ = 1_000_000  # restarts alternate between sequences starting here and at 1
# share of the run per phase; the CPU-starved phase is one minute per hour (at least 10 s)
SHARES = {"unloaded": 0.12, "flood_10x": 0.08, "flapping": 0.10, "sender_restart": 0.07,
          "clock_jumps": 0.07, "malformed": 0.16, "cpu_starved": None, "sink_unwritable": 0.10,
          "recovered": 0.12}
MALFORMED_PER_HOUR = 10_000  # per category
CLOCK_JUMPS = [0, 2**64 - 1, 2**63, 1, time.time_ns() + 3600 * 10**9, 10**9]  # capture_ns values


@dataclass
class PhaseStats:
    name: str
    start: float
    end: float = 0.0
    before: Scrape | None = None
    after: Scrape | None = None
    kernel_drops: int = 0
    load: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Traffic:
    """Nominal frames for every sensor on one single-threaded clock, plus the faults a phase adds.

    ``sent`` counts datagrams by what the daemon should do with them: ``frame`` (accepted) or the
    drop reason it must count."""

    def __init__(self, config: ModelConfig, address: tuple[str, int]) -> None:
        self.config = config
        self.address = address
        self.names = config.sensor_names
        self.frames = frames_for(config)
        self.sender = self._new_sender(HIGH_SEQ)
        self.sent: Counter[str] = Counter()
        self.scale = 1.0
        self.silent: set[str] = set()
        self.capture_ns: Callable[[], int] | None = None
        self._due = dict.fromkeys(self.names, time.monotonic())

    def _new_sender(self, first_seq: int) -> FrameSender:
        sender = FrameSender(self.address, self.names)
        sender.seq = dict.fromkeys(self.names, first_seq - 1)
        return sender

    def send(self, name: str, frame: np.ndarray | None = None, reason: str = "frame") -> int:
        stamp = self.capture_ns() if self.capture_ns else None
        seq = self.sender.send(name, self.frames[name] if frame is None else frame, stamp)
        self.sent[reason] += 1
        return seq

    def send_raw(self, datagram: bytes, reason: str) -> None:
        self.sender.send_raw(datagram)
        self.sent[reason] += 1

    def pump(self) -> None:
        """Send every frame due by now at ``scale`` x the nominal rates (catching up after a stall)."""
        now = time.monotonic()
        for spec in self.config.sensors:
            period = 1.0 / (spec.rate_hz * self.scale)
            if self._due[spec.name] < now - 1.0:  # never burst more than a second's worth
                self._due[spec.name] = now - 1.0
            while self._due[spec.name] <= now:
                self._due[spec.name] += period
                if spec.name not in self.silent:
                    self.send(spec.name)

    def restart(self) -> None:
        """The sender process restarts: a new socket and sequences reset (to 1 or to HIGH_SEQ,
        alternately, so each restart jumps by more than the tracker's restart window)."""
        first = 1 if next(iter(self.sender.seq.values())) >= HIGH_SEQ else HIGH_SEQ
        self.sender.close()
        self.sender = self._new_sender(first)

    def next_due(self) -> float:
        return min(self._due.values())

    def close(self) -> None:
        self.sender.close()


def malformed_kinds(config: ModelConfig, rng: np.random.Generator) -> dict[str, Callable[[Traffic], None]]:
    """One datagram generator per drop category of docs/wire-format.md, each named
    ``reason/what`` with the reason the daemon must count."""
    wire = WireSchema(config)
    names = config.sensor_names
    frames = frames_for(config)

    def good(sensor: int | None = None) -> tuple[int, np.ndarray]:
        i = int(rng.integers(0, len(names))) if sensor is None else sensor
        return i, frames[names[i]]

    def header_edit(**fields: int | bytes) -> Callable[[Traffic], None]:
        def make(t: Traffic) -> None:
            i, frame = good()
            datagram = encode(i, 1, 0, frame)
            values = list(HEADER.unpack_from(datagram))
            order = ["magic", "version", "dtype", "ndim", "flags", "sensor", "reserved", "length"]
            for key, value in fields.items():
                values[order.index(key)] = value
            t.send_raw(HEADER.pack(*values) + datagram[HEADER_SIZE:], "bad_header")
        return make

    def unused_dim(t: Traffic) -> None:
        i, frame = good(0)  # camera: rank 3, so dims[3] is unused and must be 0
        values = list(HEADER.unpack_from(encode(i, 1, 0, frame)))
        values[-1] = 7
        t.send_raw(HEADER.pack(*values) + frame.tobytes(), "bad_header")

    def oversize(t: Traffic) -> None:
        t.send_raw(MAGIC + rng.bytes(wire.max_datagram + 1 - len(MAGIC) + int(rng.integers(0, 64))), "too_large")

    def short(t: Traffic) -> None:
        t.send_raw(rng.bytes(int(rng.integers(0, HEADER_SIZE))), "bad_header")

    def unknown_sensor(t: Traffic) -> None:
        t.send_raw(encode(int(rng.integers(len(names), 65536)), 1, 0, good()[1]), "unknown_sensor")

    def wrong_dtype(t: Traffic) -> None:
        i, frame = good()
        t.send_raw(encode(i, 1, 0, frame.astype(np.float16)), "bad_dtype")

    def wrong_dims(t: Traffic) -> None:
        i, frame = good()
        t.send_raw(encode(i, 1, 0, frame[..., :-1]), "bad_shape")

    def truncated(t: Traffic) -> None:
        i, frame = good()
        t.send_raw(encode(i, 1, 0, frame)[:-4], "bad_header")

    def dims_vs_length(t: Traffic) -> None:
        i, frame = good()
        values = list(HEADER.unpack_from(encode(i, 1, 0, frame)))
        payload = frame.tobytes()[:-4]  # consistent with the datagram, not with the dims
        values[7] = len(payload)
        t.send_raw(HEADER.pack(*values) + payload, "bad_header")  # docs/wire-format.md: a header fault

    # sequence faults on the sensor with the longest deadline, so the frame they repeat is still
    # fresh when they arrive even if the daemon stalls between the two datagrams
    steady = max(range(len(names)), key=lambda i: config.sensors[i].deadline_s)

    def duplicate(t: Traffic) -> None:
        i, frame = good(steady)
        seq = t.send(names[i])
        t.send_raw(encode(i, seq, 0, frame), "duplicate")

    def out_of_order(t: Traffic) -> None:
        i, frame = good(steady)
        seq = t.send(names[i])
        t.send_raw(encode(i, seq - 1, 0, frame), "out_of_order")

    def non_finite(t: Traffic) -> None:
        i, frame = good()
        bad = frame.copy()
        bad.flat[int(rng.integers(0, bad.size))] = np.nan if rng.random() < 0.5 else np.inf
        t.send(names[i], bad, "non_finite")
        t.send(names[i])  # the sensor is back at once

    return {
        "too_large/oversize": oversize,
        "bad_header/short": short,
        "bad_header/magic": header_edit(magic=b"EMF0"),
        "bad_header/version": header_edit(version=VERSION + 1),
        "bad_header/flags": header_edit(flags=1),
        "bad_header/reserved": header_edit(reserved=1),
        "bad_header/ndim": header_edit(ndim=5),
        "bad_header/length_vs_datagram": truncated,
        "bad_header/unused_dim": unused_dim,
        "unknown_sensor/id": unknown_sensor,
        "bad_dtype/float16": wrong_dtype,
        "bad_shape/dims": wrong_dims,
        "bad_header/length_vs_dims": dims_vs_length,
        "duplicate/seq": duplicate,
        "out_of_order/seq": out_of_order,
        "non_finite/nan_inf": non_finite,
    }


# -- measuring the daemon ------------------------------------------------------------------------
def kernel_drops(port: int) -> int:
    """Datagrams the kernel dropped on the daemon's UDP socket (receive buffer full)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[-1])
    return 0


def fds_and_rss(pid: int) -> tuple[int, float]:
    """Open descriptors (the least of three looks, so a metrics connection closing is not counted)
    and RSS in MB."""
    proc = psutil.Process(pid)
    fds = []
    for _ in range(3):
        fds.append(proc.num_fds())
        time.sleep(0.05)
    return min(fds), proc.memory_info().rss / 2**20


def busy_load(seconds: float) -> list[subprocess.Popen]:
    """One busy process per CPU core, each stopping by itself after ``seconds``."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]


def tamper(bundle: Path, out: Path) -> str:
    """A copy of ``bundle`` with bytes changed in the middle of one stage file; returns its name."""
    shutil.copytree(bundle, out)
    stage = sorted(p for p in out.iterdir() if p.suffix in (".onnx", ".engine", ".plan"))[0]
    data = bytearray(stage.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    stage.write_bytes(bytes(data))
    return stage.name


def repoint(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def sink_lines(path: Path) -> list[dict[str, Any]]:
    """Every record of the JSONL sink, rotated files first (oldest first)."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [r for p in (*rotated, path) for r in read_records(p)]


# -- the run -------------------------------------------------------------------------------------
def phase_plan(minutes: float) -> list[tuple[str, float]]:
    total = minutes * 60
    cpu = max(10.0, total / 60)
    rest = total - cpu
    shares = {k: v for k, v in SHARES.items() if v is not None}
    scale = rest / sum(shares.values())
    return [(name, cpu if share is None else share * scale) for name, share in SHARES.items()]


class Soak:
    def __init__(self, engines: Path, minutes: float, work: Path, seed: int = 0) -> None:
        self.minutes = minutes
        self.work = work
        self.rng = np.random.default_rng(seed)
        self.config = read_engine_manifest(engines).config
        self.bundles = {name: work / name for name in ("build_a", "build_b")}
        for path in self.bundles.values():
            shutil.copytree(engines, path)
        self.tampered_stage = tamper(engines, work / "build_tampered")
        self.current = work / "current"
        self.current.symlink_to(self.bundles["build_a"])
        self.sink = work / "sink" / "pred.jsonl"
        est_bytes = 400 * RATE_HZ * minutes * 60
        (work / "daemon.yaml").write_text(yaml.safe_dump({
            "sources": {"network": [{"port": 0}]},
            "metrics": {"port": 0},
            "loop": {"schedule": "fixed", "rate_hz": RATE_HZ},
            "tracker": {"hold_s": HOLD_S},
            "sinks": {"jsonl": {"path": str(self.sink), "max_bytes": max(65536, int(est_bytes / 6)),
                                "backups": 50}}}))
        self.phases: list[PhaseStats] = []
        self.reloads: list[dict[str, Any]] = []
        self.malformed_sent: Counter[str] = Counter()

    def run(self) -> dict[str, Any]:
        daemon = DaemonProcess(self.current, self.work / "daemon.yaml", "--log-level", "INFO",
                               log=self.work / "daemon.log")
        try:
            return self._drive(daemon)
        finally:
            daemon.kill()

    def _drive(self, daemon: DaemonProcess) -> dict[str, Any]:
        metrics_url = daemon.ready["metrics"]
        traffic = Traffic(self.config, daemon.udp)
        plan = phase_plan(self.minutes)
        total = sum(d for _, d in plan)
        reload_every = total / 12
        first_reload = plan[0][1] + reload_every / 2
        reload_times = [first_reload + k * reload_every for k in range(int((total - first_reload) / reload_every))]
        tampered_at = len(reload_times) // 2
        start = time.monotonic()
        traffic.pump()
        time.sleep(2.0)  # warm-up before the first resource look
        fds_start, rss_start = fds_and_rss(daemon.pid)
        samples = [(0.0, fds_start, rss_start)]
        next_sample = time.monotonic() + max(10.0, total / 60)
        t0 = time.monotonic()
        for name, seconds in plan:
            phase = PhaseStats(name, time.monotonic(), before=Scrape(metrics_url))
            phase.kernel_drops = -kernel_drops(daemon.udp[1])
            end = phase.start + seconds
            for _ in self._phase(name, phase, traffic, daemon, end, seconds):
                now = time.monotonic()
                while reload_times and now - t0 >= reload_times[0]:
                    reload_times.pop(0)
                    self._reload(daemon, metrics_url, tampered=(len(self.reloads) == tampered_at), phase=name)
                if now >= next_sample:
                    fds, rss = fds_and_rss(daemon.pid)
                    samples.append((now - start, fds, rss))
                    phase.load.append(os.getloadavg()[0])
                    next_sample = now + max(10.0, total / 60)
                    print(f"t={now - start:7.0f}s phase={name} fds={fds} rss={rss:.1f} MB "
                          f"load={phase.load[-1]:.1f}", flush=True)
            phase.end = time.monotonic()
            phase.load.append(os.getloadavg()[0])
            phase.kernel_drops += kernel_drops(daemon.udp[1])
            phase.after = Scrape(metrics_url)
            self.phases.append(phase)
        self._settle(metrics_url, traffic, daemon)
        fds_end, rss_end = fds_and_rss(daemon.pid)
        samples.append((time.monotonic() - start, fds_end, rss_end))
        last = Scrape(metrics_url)
        health_code = self._health(metrics_url)
        traffic.close()
        summary, err = daemon.stop(timeout=120)
        return self._report(summary, err, last, traffic, samples, health_code, time.monotonic() - start)

    # -- phases: generators that yield after each step, until the phase clock runs out ----------
    def _phase(self, name: str, phase: PhaseStats, traffic: Traffic, daemon: DaemonProcess,
               end: float, seconds: float) -> Iterator[None]:
        traffic.scale, traffic.silent, traffic.capture_ns = 1.0, set(), None
        if name == "flood_10x":
            traffic.scale = 10.0
        if name == "clock_jumps":
            traffic.capture_ns = self._jumping_clock
        load: list[subprocess.Popen] = []
        if name == "cpu_starved":
            load = busy_load(seconds)
            phase.notes.append(f"{len(load)} busy processes for {seconds:.0f} s")
        flap_at, restart_at = time.monotonic(), time.monotonic() + 1.0
        kinds = malformed_kinds(self.config, self.rng) if name == "malformed" else {}
        per_kind = max(50, int(MALFORMED_PER_HOUR * self.minutes / 60)) if kinds else 0
        batches = self._malformed_batches(kinds, per_kind)
        batch_every = seconds * 0.9 / max(1, len(batches))
        next_batch = time.monotonic()
        disk_fault = (phase.start + seconds * 0.2, phase.start + seconds * 0.6) if name == "sink_unwritable" else None
        fault_on = False
        while (now := time.monotonic()) < end:
            traffic.pump()
            if name == "flapping" and now >= flap_at:
                traffic.silent ^= {"camera"}
                flap_at = now + float(self.rng.uniform(0.05, 0.5))
            if name == "sender_restart" and now >= restart_at:
                silent_gap = 0.5  # a process restart takes a moment
                traffic.silent = set(traffic.names)
                wake = now + silent_gap
                while time.monotonic() < wake:
                    traffic.pump()
                    time.sleep(0.01)
                traffic.restart()
                traffic.silent = set()
                restart_at = time.monotonic() + max(5.0, seconds / 10)
                phase.notes.append("restart")
            if batches and now >= next_batch:
                self._send_batch(batches.pop(0), traffic, daemon)
                next_batch = now + batch_every
            if disk_fault is not None:
                if not fault_on and disk_fault[0] <= now < disk_fault[1]:
                    self._limit_file_size(daemon.pid, on=True)
                    fault_on = True
                elif fault_on and now >= disk_fault[1]:
                    unwritten = Scrape(daemon.ready["metrics"]).value("edgemoe_sink_unwritten_records", sink="jsonl")
                    phase.notes.append(f"unwritten records in memory at the end of the outage: {unwritten:.0f}")
                    self._limit_file_size(daemon.pid, on=False)
                    fault_on = False
            yield
            time.sleep(max(0.0, min(traffic.next_due(), end) - time.monotonic()))
        if fault_on:
            self._limit_file_size(daemon.pid, on=False)
        while batches:  # the categories' counts are a promise: finish them
            self._send_batch(batches.pop(0), traffic, daemon)
        for proc in load:
            proc.wait(timeout=seconds + 60)

    def _jumping_clock(self) -> int:
        """A sender clock gone wrong: zero, the u64 extremes, an hour ahead, or +-1000 s of jitter."""
        if self.rng.random() < 0.5:
            return CLOCK_JUMPS[int(self.rng.integers(0, len(CLOCK_JUMPS)))]
        return max(0, time.monotonic_ns() + int(self.rng.integers(-10**12, 10**12)))

    def _malformed_batches(self, kinds: dict[str, Callable[[Traffic], None]],
                           per_kind: int) -> list[list[tuple[str, Callable[[Traffic], None]]]]:
        order = [(name, make) for name, make in kinds.items() for _ in range(per_kind)]
        self.rng.shuffle(order)
        size = 200
        return [order[i:i + size] for i in range(0, len(order), size)]

    def _send_batch(self, batch: list[tuple[str, Callable[[Traffic], None]]], traffic: Traffic,
                    daemon: DaemonProcess) -> None:
        """Send one batch, then wait until the daemon has read it (so the kernel never drops one)."""
        for name, make in batch:
            make(traffic)
            self.malformed_sent[name] += 1
        want = sum(traffic.sent.values()) - kernel_drops(daemon.udp[1])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if Scrape(daemon.ready["metrics"]).value("edgemoe_datagrams_total") >= want:
                return
            traffic.pump()
            time.sleep(0.01)

    @staticmethod
    def _limit_file_size(pid: int, on: bool) -> None:
        """The sink's file stops taking data (EFBIG on every write, as on a full disk) or takes it again."""
        proc = psutil.Process(pid)
        if on:
            proc.rlimit(psutil.RLIMIT_FSIZE, (1, psutil.RLIM_INFINITY))  # any write past byte 1 fails
        else:
            proc.rlimit(psutil.RLIMIT_FSIZE, (psutil.RLIM_INFINITY, psutil.RLIM_INFINITY))

    def _reload(self, daemon: DaemonProcess, metrics_url: str, tampered: bool, phase: str) -> None:
        before = Scrape(metrics_url)
        serving = Path(os.readlink(self.current)).name
        target = self.work / "build_tampered" if tampered else \
            self.bundles["build_b" if serving == "build_a" else "build_a"]
        if serving == "build_tampered":  # after the refused one, go back to a good build
            target = self.bundles["build_a"]
        repoint(self.current, target)
        daemon.signal(signal.SIGHUP)
        sent = time.monotonic()
        result = "timeout"
        while time.monotonic() < sent + 60:
            after = Scrape(metrics_url)
            ok = after.value("edgemoe_reloads_total", result="ok") - before.value("edgemoe_reloads_total", result="ok")
            failed = (after.value("edgemoe_reloads_total", result="failed")
                      - before.value("edgemoe_reloads_total", result="failed"))
            if ok or failed:
                result = "ok" if ok else "refused"
                break
            time.sleep(0.05)
        self.reloads.append({"phase": phase, "mono": sent, "to": target.name, "tampered": tampered,
                             "result": result, "seconds": round(time.monotonic() - sent, 2)})
        if tampered:
            repoint(self.current, self.bundles["build_a"])

    def _settle(self, metrics_url: str, traffic: Traffic, daemon: DaemonProcess) -> None:
        """Wait until the daemon has read every datagram sent (what the kernel did not drop)."""
        want = sum(traffic.sent.values()) - kernel_drops(daemon.udp[1])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Scrape(metrics_url).value("edgemoe_datagrams_total") < want:
            time.sleep(0.05)
        time.sleep(0.5)

    @staticmethod
    def _health(metrics_url: str) -> int:
        try:
            with urllib.request.urlopen(metrics_url.replace("/metrics", "/healthz"), timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    # -- the verdict ----------------------------------------------------------------------------
    def _report(self, summary: dict[str, Any], err: str, last: Scrape, traffic: Traffic,
                samples: list[tuple[float, int, float]], health_code: int, wall_s: float) -> dict[str, Any]:
        records = sink_lines(self.sink)
        seqs = [r["seq"] for r in records]
        expected_drops = {reason: n for reason, n in traffic.sent.items() if reason != "frame"}
        counted = {k: int(v) for k, v in summary["drops"].items() if k not in ("missed_tick", "runtime_error")}
        kernel = sum(p.kernel_drops for p in self.phases)
        phases = [self._phase_row(p, records) for p in self.phases]
        base = phases[0]
        for row in phases:
            row["p50_vs_unloaded"] = round(row["p50_ms"] / base["p50_ms"], 2) if base["p50_ms"] else None
            row["p99_vs_unloaded"] = round(row["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None
        tampered = [r for r in self.reloads if r["tampered"]]
        bundles_served = sorted({r["bundle"] for r in records})
        result = {
            "minutes": self.minutes, "wall_s": round(wall_s, 1),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "predictions": summary["predictions"], "records": len(records),
            "lost": summary["predictions"] - len(records), "unwritten_at_exit": summary.get("unwritten"),
            "seq_contiguous": seqs == list(range(1, len(seqs) + 1)),
            "metrics_predictions_before_stop": last.value("edgemoe_predictions_total"),
            "datagrams_sent": sum(traffic.sent.values()), "datagrams_received": summary["datagrams"],
            "kernel_drops": kernel,
            "frames_sent": traffic.sent["frame"],
            "frames_accepted": int(sum(last.by_label("edgemoe_frames_total", "sensor").values())),
            "drops_expected": dict(sorted(expected_drops.items())), "drops_counted": dict(sorted(counted.items())),
            "malformed_sent": dict(sorted(self.malformed_sent.items())),
            "missed_ticks": int(summary["drops"].get("missed_tick", 0)),
            "sink_errors": last.value("edgemoe_sink_errors_total", sink="jsonl"),
            "reloads": self.reloads,
            "tampered_refused": (bool(tampered) and all(r["result"] == "refused" for r in tampered)
                                 and "build_tampered" not in bundles_served),
            "tampered_stage": self.tampered_stage,
            "bundles_served": bundles_served,
            "fds_start_end": [samples[0][1], samples[-1][1]], "fds_max": max(s[1] for s in samples),
            "rss_mb_start_end": [round(samples[0][2], 1), round(samples[-1][2], 1)],
            "rss_mb_max": round(max(s[2] for s in samples), 1),
            "healthz_at_end": health_code,
            "torch_imported": summary.get("torch_imported"),
            "tracebacks_in_log": err.count("Traceback"),
            "phases": phases,
        }
        # kernel drops (receive buffer full) are counted apart; malformed batches are paced to fit the buffer
        result["drops_match"] = result["drops_expected"] == result["drops_counted"]
        result["all_datagrams_accounted"] = (result["datagrams_received"] + kernel == result["datagrams_sent"]
                                             and result["frames_accepted"] + sum(counted.values())
                                             == result["datagrams_received"])
        result["switches_within_bound"] = all(p["mask_switches"] <= p["switch_bound"] for p in phases)
        return result

    def _phase_row(self, p: PhaseStats, records: list[dict[str, Any]]) -> dict[str, Any]:
        assert p.before is not None and p.after is not None
        inside = [r for r in records if p.start <= r["mono"] < p.end]
        lat = np.array([r["latency_ms"] for r in inside if r["probs"] is not None] or [np.nan])
        gaps = np.diff([r["mono"] for r in inside]) if len(inside) > 1 else np.array([0.0])
        duration = p.end - p.start

        def delta(name: str, **labels: str) -> int:
            return int(p.after.value(name, **labels) - p.before.value(name, **labels))  # type: ignore[union-attr]

        drops_after, drops_before = p.after.by_label("edgemoe_drops_total", "reason"), \
            p.before.by_label("edgemoe_drops_total", "reason")
        drops = {k: int(v - drops_before.get(k, 0)) for k, v in drops_after.items() if v - drops_before.get(k, 0)}
        return {
            "phase": p.name, "seconds": round(duration, 1), "predictions": delta("edgemoe_predictions_total"),
            "datagrams": delta("edgemoe_datagrams_total"), "kernel_drops": p.kernel_drops, "drops": drops,
            "missed_ticks": drops.get("missed_tick", 0),
            "late_ticks": int((gaps > 2.0 / RATE_HZ).sum()),
            "p50_ms": round(float(np.nanmedian(lat)), 3), "p99_ms": round(float(np.nanpercentile(lat, 99)), 3),
            "mask_switches": delta("edgemoe_mask_switches_total"),
            "switch_bound": int(self.config.num_sensors * (duration / HOLD_S + 1)),
            "load_avg_1m": round(float(np.mean(p.load)), 2) if p.load else None,
            "notes": sorted(Counter(p.notes).items()) if p.notes else [],
        }


def markdown(result: dict[str, Any], command: str) -> str:
    r = result
    lines = [
        "# Daemon soak: an hour of faults against a real `edgemoe run`", "",
        f"Command: `{command}`", "",
        f"Machine: {r['machine']['cpus']} CPU cores, {r['machine']['platform']}, Python {r['machine']['python']}. "
        "The machine was shared with other work running at the same time (load average per phase "
        "below); latency and deadline misses are judged against the unloaded phase of this same run.",
        "", f"Wall time {r['wall_s'] / 60:.1f} min; loop fixed at {RATE_HZ:.0f} Hz, hold_s {HOLD_S}.", "",
        "## Verdict", "",
        "| check | result |", "|---|---|",
        f"| predictions lost (computed, not in the JSONL files) | **{r['lost']}** of {r['predictions']} "
        f"(seq 1..N contiguous: {r['seq_contiguous']}; unwritten at exit: {r['unwritten_at_exit']}) |",
        f"| every datagram accounted (received + kernel drops = sent; frames + drops = received) | "
        f"{r['all_datagrams_accounted']} ({r['datagrams_sent']} sent, {r['datagrams_received']} received, "
        f"{r['kernel_drops']} kernel drops) |",
        f"| drops counted by reason = sent by reason | {r['drops_match']} |",
        f"| tampered bundle refused on SIGHUP, old one kept serving | {r['tampered_refused']} "
        f"(stage file `{r['tampered_stage']}` changed; builds that served: {', '.join(r['bundles_served'])}) |",
        f"| mask switches within the hysteresis bound in every phase | {r['switches_within_bound']} |",
        f"| open file descriptors start -> end (max) | {r['fds_start_end'][0]} -> {r['fds_start_end'][1]} "
        f"({r['fds_max']}) |",
        f"| RSS MB start -> end (max) | {r['rss_mb_start_end'][0]} -> {r['rss_mb_start_end'][1]} "
        f"({r['rss_mb_max']}) |",
        f"| /healthz at the end; tracebacks in the daemon log; torch imported | {r['healthz_at_end']}; "
        f"{r['tracebacks_in_log']}; {r['torch_imported']} |", "",
        "## Per phase", "",
        "| phase | s | load avg | predictions | datagrams | missed ticks | gaps > 2 ticks | p50 ms (x unloaded) "
        "| p99 ms (x unloaded) | mask switches (bound) | drops |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in r["phases"]:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(p["drops"].items())) or "-"
        lines.append(f"| {p['phase']} | {p['seconds']:.0f} | {p['load_avg_1m']} | {p['predictions']} | "
                     f"{p['datagrams']} | {p['missed_ticks']} | {p['late_ticks']} | {p['p50_ms']} "
                     f"({p['p50_vs_unloaded']}) | {p['p99_ms']} ({p['p99_vs_unloaded']}) | "
                     f"{p['mask_switches']} ({p['switch_bound']}) | {drops} |")
    lines += ["", "## Drops by reason", "", "| reason | sent | counted by the daemon |", "|---|---|---|"]
    for reason in sorted(set(r["drops_expected"]) | set(r["drops_counted"])):
        lines.append(f"| {reason} | {r['drops_expected'].get(reason, 0)} | {r['drops_counted'].get(reason, 0)} |")
    lines += ["", "Malformed datagrams sent per category (`reason/what`):", "",
              ", ".join(f"`{k}` {v}" for k, v in r["malformed_sent"].items()), "",
              "## Reloads (SIGHUP)", "", "| phase | to | tampered | result | seconds to answer |", "|---|---|---|---|---|"]
    for rl in r["reloads"]:
        lines.append(f"| {rl['phase']} | {rl['to']} | {rl['tampered']} | {rl['result']} | {rl['seconds']} |")
    notes = [f"- {p['phase']}: " + "; ".join(f"{k} x{n}" if n > 1 else k for k, n in p["notes"])
             for p in r["phases"] if p["notes"]]
    lines += ["", "## Notes", "", *notes,
              f"- Sink write failures while the file was unwritable: {r['sink_errors']:.0f} (records kept in "
              "memory, written when the file took data again).", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engines", type=Path)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--md", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write the full result as JSON here")
    parser.add_argument("--work", type=Path, help="working directory (default: a new temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edgemoe-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    result = Soak(args.engines, args.minutes, work, args.seed).run()
    command = "PYTHONPATH=. python scripts/soak_daemon.py " + " ".join(sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(markdown(result, command))
    print(json.dumps({k: v for k, v in result.items() if k not in ("phases", "reloads")}, indent=2))
    ok = (result["lost"] == 0 and result["drops_match"] and result["all_datagrams_accounted"]
          and result["tampered_refused"] and result["fds_start_end"][0] == result["fds_start_end"][1])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
