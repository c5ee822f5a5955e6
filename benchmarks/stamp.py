"""Stamp recorded benchmark results with the commit and the machine that produced them.

``python benchmarks/stamp.py FILE...``: a Markdown file gets a closing line, a JSON file a
``recorded`` key, naming the commit (``+dirty`` when the tree had changes), the host's CPU and core
count, the 1-minute load average, Python and the time. Used by ``benchmarks/run_all.sh``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

MARK = "Recorded by benchmarks/run_all.sh"


def provenance() -> dict[str, object]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()

    # results rewritten earlier in the same run are not a change to the code they describe
    dirty = "+dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results") else ""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    return {"commit": git("rev-parse", "--short=12", "HEAD") + dirty, "machine": f"{platform.machine()} {cpu}".strip(),
            "cores": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(), "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def stamp(path: Path, facts: dict[str, object]) -> None:
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        data["recorded"] = facts
        path.write_text(json.dumps(data, indent=1) + "\n")
        return
    body = "\n".join(line for line in path.read_text().rstrip("\n").splitlines() if not line.startswith(MARK))
    line = (f"{MARK} at commit `{facts['commit']}` on {facts['machine']}, {facts['cores']} cores "
            f"(1-min load {facts['load_1min']}), Python {facts['python']}, {facts['at']}.")
    path.write_text(f"{body.rstrip()}\n\n{line}\n")


def main(paths: list[str]) -> int:
    facts = provenance()
    for name in paths:
        path = Path(name)
        if not path.is_file():
            print(f"stamp: {path} was not written", file=sys.stderr)
            return 2
        stamp(path, facts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
