#!/usr/bin/env python3
"""Latency profile of an engine bundle on the device itself, without the full CLI installed.

Needs only numpy, onnxruntime, pydantic, pyyaml and rich (matplotlib for plots, optional) and a
checkout of this repository; never imports torch. Same arguments as ``edgemoe profile``::

    python3 scripts/profile_latency.py engines/built/orin --out runs/profile-orin
    python3 scripts/profile_latency.py compare runs/profile-cpu runs/profile-orin
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgemoe.core.errors import EdgeMoEError  # noqa: E402
from edgemoe.profile.cli import add_arguments, main  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="profile_latency.py", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        sys.exit(main(parser.parse_args()))
    except EdgeMoEError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
