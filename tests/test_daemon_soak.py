"""The daemon soak in CI: two minutes of ``scripts/soak_daemon.py`` (the same script as the
recorded hour) against a real ``edgemoe run``, and the sink behaviour that soak relies on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.daemon_helpers import ROOT, DaemonProcess, Scrape, daemon_config

SOAK_MINUTES = 2


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory, engines_dir: Path) -> dict:
    work = tmp_path_factory.mktemp("soak")
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak_daemon.py"), str(engines_dir), "--minutes", str(SOAK_MINUTES),
         "--json", str(work / "soak.json"), "--md", str(work / "soak.md"), "--work", str(work / "run")],
        capture_output=True, text=True, cwd=ROOT, timeout=SOAK_MINUTES * 60 + 240,
        env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
    assert (work / "soak.json").exists(), f"rc={out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return json.loads((work / "soak.json").read_text())


def test_soak_loses_no_prediction(soak: dict) -> None:
    assert soak["predictions"] > 0
    assert soak["lost"] == 0 and soak["unwritten_at_exit"] == 0
    assert soak["seq_contiguous"]
    assert soak["metrics_predictions_before_stop"] <= soak["predictions"]
    assert soak["sink_errors"] > 0  # the unwritable-file phase did make writes fail


def test_soak_counts_every_drop_by_the_reason_it_was_sent_with(soak: dict) -> None:
    assert soak["all_datagrams_accounted"], (soak["datagrams_sent"], soak["datagrams_received"])
    assert soak["drops_match"], (soak["drops_expected"], soak["drops_counted"])
    # every category of docs/wire-format.md was sent
    reasons = {"too_large", "bad_header", "unknown_sensor", "bad_dtype", "bad_shape", "duplicate",
               "out_of_order", "non_finite"}
    assert reasons <= set(soak["drops_expected"])
    assert all(n > 0 for n in soak["malformed_sent"].values())


def test_soak_refuses_the_tampered_reload_and_keeps_serving(soak: dict) -> None:
    assert soak["tampered_refused"]
    good = [r for r in soak["reloads"] if not r["tampered"]]
    assert good and all(r["result"] == "ok" for r in good)
    assert set(soak["bundles_served"]) == {"build_a", "build_b"}


def test_soak_leaves_descriptors_flat_and_the_daemon_healthy(soak: dict) -> None:
    assert soak["fds_start_end"][0] == soak["fds_start_end"][1]
    assert soak["healthz_at_end"] == 200
    assert soak["tracebacks_in_log"] == 0
    assert soak["torch_imported"] is False
    assert soak["switches_within_bound"]
    assert [p["phase"] for p in soak["phases"]][0] == "unloaded"


SINK_UNDER_A_FILE_SIZE_LIMIT = """
import json, resource, sys
from pathlib import Path
from edgemoe.daemon.config import JsonlSink
from edgemoe.daemon.sinks import JsonLinesSink

path = Path(sys.argv[1])
errors = []
sink = JsonLinesSink(JsonlSink(path=path, max_bytes=4096, backups=10), errors.append)
line = lambda i: (json.dumps({"seq": i, "pad": "x" * 40}) + "\\n").encode()
for i in range(1, 101):
    sink.write(line(i))
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))  # every write to a file fails with EFBIG
for i in range(101, 201):
    sink.write(line(i))
kept = sink.unwritten
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
for i in range(201, 301):
    sink.write(line(i))
sink.close()
print(json.dumps({"errors": len(errors), "kept": kept, "unwritten": sink.unwritten}))
"""


def run_sink_script(script: str, path: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run a sink script in its own process (it lowers the file-size limit) and read its JSON line."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(path)], capture_output=True,
                         text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert out.returncode == 0, out.stderr
    return out, json.loads(out.stdout)


def test_jsonl_sink_keeps_records_while_the_file_refuses_writes(tmp_path: Path) -> None:
    out, result = run_sink_script(SINK_UNDER_A_FILE_SIZE_LIMIT, tmp_path / "pred.jsonl")
    assert result["errors"] >= 100 and result["kept"] == 100 and result["unwritten"] == 0
    files = sorted(tmp_path.glob("pred.jsonl.*"), key=lambda p: -int(p.suffix[1:])) + [tmp_path / "pred.jsonl"]
    seqs = [json.loads(line)["seq"] for f in files for line in f.read_text().splitlines()]
    assert len(files) > 2 and seqs == list(range(1, 301))  # in order, none lost or doubled, across rotations
    assert "write failed" in out.stderr and "writable again" in out.stderr


SINK_WITH_A_BOUNDED_BACKLOG = """
import json, resource, sys
from pathlib import Path
from edgemoe.daemon.config import JsonlSink
from edgemoe.daemon.sinks import JsonLinesSink

path = Path(sys.argv[1])
sink = JsonLinesSink(JsonlSink(path=path, max_bytes=10**6, max_backlog_bytes=4096))
line = lambda i: (json.dumps({"seq": i, "pad": "x" * 40}) + "\\n").encode()
for i in range(1, 11):
    sink.write(line(i))
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 30, hard))  # the next record half fits
for i in range(11, 511):
    sink.write(line(i))
backlog = len(sink._buffer)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
sink.write(line(511))
sink.close()
print(json.dumps({"lost": sink.lost, "backlog": backlog, "unwritten": sink.unwritten}))
"""


def test_jsonl_sink_backlog_is_bounded_and_drops_the_oldest_whole_records(tmp_path: Path) -> None:
    out, result = run_sink_script(SINK_WITH_A_BOUNDED_BACKLOG, tmp_path / "pred.jsonl")
    assert result["backlog"] <= 4096 and result["unwritten"] == 0
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    # 1..10, then record 11 (half on disk when the limit hit, so finished, not dropped), then the
    # newest records that fit the bound; every line whole and the count of the gap equals `lost`
    assert seqs[:11] == list(range(1, 12)) and seqs[-1] == 511
    assert seqs[11:] == list(range(seqs[11], 512)) and seqs[11] - 12 == result["lost"] > 0
    assert "dropped the" in out.stderr


def test_rss_stays_flat_over_many_reloads(tmp_path: Path, engines_dir: Path) -> None:
    """Each reload loads in a new thread; without handing the freed heap back, glibc kept it
    per thread arena and RSS grew about 1 MB per reload (17 MB over these 20, after warm-up)."""
    reloads = 20
    daemon = DaemonProcess(engines_dir, daemon_config(tmp_path), log=tmp_path / "daemon.log")
    try:
        proc = psutil.Process(daemon.pid)

        def reload_and_wait(n: int) -> None:
            daemon.signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while Scrape(daemon.ready["metrics"]).value("edgemoe_reloads_total", result="ok") < n:
                assert time.monotonic() < deadline, daemon.stderr_text()
                time.sleep(0.05)

        for n in range(1, 4):  # warm-up: the first reloads size the allocator's arenas
            reload_and_wait(n)
        time.sleep(0.3)
        start = proc.memory_info().rss
        for n in range(4, 4 + reloads):
            reload_and_wait(n)
        time.sleep(0.3)
        growth_mb = (proc.memory_info().rss - start) / 2**20
        daemon.stop()
    finally:
        daemon.kill()
    assert growth_mb < 8, f"RSS grew {growth_mb:.1f} MB over {reloads} reloads"
