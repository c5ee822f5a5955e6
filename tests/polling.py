"""Waiting in tests without assuming an idle machine."""

from __future__ import annotations

import time
from collections.abc import Callable

# How long a test waits for a subprocess, a thread or a condition before calling it hung. A guard
# against hangs, never a speed limit: a CI machine under load can be ten times slower than idle.
HANG_S = 600.0

def wait_for(condition: Callable[[], bool], timeout: float = HANG_S, what: str = "condition") -> None:
    """Poll ``condition`` until it holds, instead of sleeping for a time that only an idle machine
    keeps."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.05)
