"""A TensorRT logger that keeps the recent log, so a failed build can show its tail."""

from __future__ import annotations

import os
import sys
from collections import deque

import tensorrt as trt

VERBOSE = os.environ.get("EDGEMOE_TRT_VERBOSE", "") not in ("", "0")


class CapturingLogger(trt.ILogger):
    """Keeps INFO and worse (VERBOSE with ``EDGEMOE_TRT_VERBOSE=1``); echoes errors to stderr."""

    def __init__(self, keep: int = 4000) -> None:
        trt.ILogger.__init__(self)
        self.lines: deque[str] = deque(maxlen=keep)
        self.limit = trt.ILogger.Severity.VERBOSE if VERBOSE else trt.ILogger.Severity.INFO

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        if int(severity) > int(self.limit):
            return
        line = f"[{severity.name}] {msg}"
        self.lines.append(line)
        if int(severity) <= int(trt.ILogger.Severity.ERROR) or VERBOSE:
            print(f"TensorRT {line}", file=sys.stderr)

    def tail(self, n: int = 15) -> list[str]:
        return list(self.lines)[-n:]

    def clear(self) -> None:
        self.lines.clear()
