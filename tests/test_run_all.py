"""``benchmarks/run_all.sh`` re-records every benchmark: each command it lists exists and has the
short mode the script uses for ``--short``; the stamp names commit and machine. (The set itself
runs for hours; it is run on a quiet machine, not here.)"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgemoe.cli import VERBS
from tests.polling import HANG_S

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
# Results no benchmark re-records: the README; two records of one change (the runtime before and
# after it); the test suite's own check under load, re-recorded by scripts/ci_under_load.sh.
NOT_BENCHMARKS = ("README.md", "hot_path_before_after.md", "hot_path_robot4.md", "ci_under_load.md")


def listed() -> list[tuple[str, str, list[str]]]:
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_all.sh"), "--list"], capture_output=True, text=True,
                          cwd=ROOT, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.splitlines() if line]
    return [(name, command, flags.split()) for name, command, flags in rows]


def test_every_recorded_result_has_a_benchmark() -> None:
    names = {name for name, _, _ in listed()}
    results = ROOT / "benchmarks" / "results"
    for path in results.iterdir():
        if path.name in NOT_BENCHMARKS or path.suffix in (".png", ".json"):
            continue  # companions of a listed .md are .png and .json
        stem = path.stem.removesuffix("_20ep")
        assert any(stem == n or stem.startswith(n) for n in names), f"{path.name}: no benchmark re-records it"


def test_the_results_readme_lists_every_result() -> None:
    results = ROOT / "benchmarks" / "results"
    readme = (results / "README.md").read_text()
    patterns = re.findall(r"`([\w.]*\*[\w.]*)`", readme)  # e.g. `calibration_accuracy_*.md`
    for path in results.iterdir():
        if path.suffix == ".md" and path.name != "README.md":
            named = path.name in readme or any(fnmatch.fnmatch(path.name, p) for p in patterns)
            assert named, f"benchmarks/results/README.md does not list {path.name}"
        elif path.is_dir():
            assert f"{path.name}/" in readme, f"benchmarks/results/README.md does not list {path.name}/"


@pytest.mark.parametrize(("name", "command", "flags"), listed(), ids=[row[0] for row in listed()])
def test_each_benchmark_exists_and_has_a_short_mode(name: str, command: str, flags: list[str]) -> None:
    if command.startswith("edgemoe "):
        verb = command.split()[1]
        assert verb in VERBS, f"{name}: no verb '{verb}'"
        argv = [sys.executable, "-m", "edgemoe.cli", *command.split()[1:], "--help"]
    else:
        assert (ROOT / command).is_file(), f"{name}: {command} does not exist"
        argv = [sys.executable, str(ROOT / command), "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    for flag in (f for f in flags if f.startswith("--")):
        assert flag in done.stdout, f"{name}: {command} has no {flag} (its short mode)"


def test_the_stamp_names_commit_and_machine(tmp_path: Path) -> None:
    md, js = tmp_path / "r.md", tmp_path / "r.json"
    md.write_text("# result\n")
    js.write_text(json.dumps({"value": 1}))
    for _ in range(2):  # stamping again replaces the line, it does not pile up
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stamp.py"), str(md), str(js)],
                              capture_output=True, text=True, cwd=ROOT, timeout=HANG_S)
        assert done.returncode == 0, done.stderr
    lines = md.read_text().splitlines()
    assert lines[0] == "# result" and sum("Recorded by benchmarks/run_all.sh at commit" in line for line in lines) == 1
    recorded = json.loads(js.read_text())["recorded"]
    assert recorded["commit"] and recorded["cores"] >= 1 and recorded["machine"]
