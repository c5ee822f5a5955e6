"""What every verb of the ``edgemoe`` command does alike, in one place.

- Exit codes: 0 done; 2 the command or one of its inputs is wrong (a flag, a config, a dataset, a
  bundle: fix it and run again); 1 something failed while running (an engine, the OS, a missing
  optional dependency); 130 interrupted.
- Errors are one line on stderr naming what was wrong and where; tracebacks are for bugs only.
- Outputs are never replaced without ``--force``.
- stdout carries results (text, or one JSON document with ``--json``); progress goes to stderr
  and ``-q`` silences it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgemoe.core.errors import EdgeMoEError, EngineError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# A module a verb imports -> the extra that installs it (the runtime side needs none of these).
EXTRA_OF_MODULE = {
    "torch": "train", "onnx": "train", "onnxscript": "train", "onnxsim": "train", "safetensors": "train",
    "sklearn": "train", "matplotlib": "train", "prometheus_client": "daemon", "cuda": "tensorrt",
}


class UsageError(EdgeMoEError):
    """The command line asks for something that cannot be done as asked (exit 2)."""


class MissingExtra(EdgeMoEError):
    """The verb needs an optional dependency this install lacks (exit 1)."""


def missing_extra(exc: ModuleNotFoundError) -> MissingExtra | None:
    """The install hint for a missing optional dependency; None for any other missing module."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return MissingExtra(f"needs the '{extra}' extra (module '{module}' is not installed): "
                        f"pip install 'edgemoe[{extra}]'")


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, (EngineError, MissingExtra, OSError)):
        return EXIT_FAILURE
    return EXIT_USAGE if isinstance(exc, EdgeMoEError) else EXIT_FAILURE


def one_line(exc: BaseException) -> str:
    """The error as one line: the category and the message, the file for an OS error."""
    if isinstance(exc, OSError) and exc.strerror:
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        text = f"{where}: {exc.strerror}" if where else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, EdgeMoEError) and not isinstance(exc, (UsageError, MissingExtra)):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())


# -- the overwrite rule ---------------------------------------------------------------------------
def refuse_overwrite(path: Path, force: bool, flag: str = "--out") -> None:
    """An existing file or non-empty directory at ``path`` is replaced only with ``--force``."""
    path = Path(path)
    if not path.exists() or force or (path.is_dir() and not any(path.iterdir())):
        return
    kind = "directory" if path.is_dir() else "file"
    raise UsageError(f"{flag} {path}: the {kind} exists; pass --force to replace it")


def require_directory_path(path: Path, flag: str = "--out") -> None:
    """A directory output cannot take the place of a file, with or without ``--force``."""
    if Path(path).exists() and not Path(path).is_dir():
        raise UsageError(f"{flag} {path}: is a file; give a directory path")


# -- where output goes ----------------------------------------------------------------------------
@dataclass
class Output:
    quiet: bool = False
    verbose: int = 0


OUTPUT = Output()


def progress(message: str) -> None:
    """A progress line on stderr (silenced by ``-q``); stdout stays for results."""
    if not OUTPUT.quiet:
        print(message, file=sys.stderr, flush=True)


def emit_json(document: Any) -> None:
    """The ``--json`` result: one JSON document on stdout."""
    print(json.dumps(document, indent=2, default=str))


# -- per-stage timing -----------------------------------------------------------------------------
@dataclass
class StageTimer:
    """Wall time per stage of export/build, from the start of one stage to the start of the next
    (the last stage's time runs to the end of the command, manifest writing included)."""

    verb: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    _started: float = field(default_factory=time.perf_counter)
    _open: tuple[str, str, float] | None = None

    def start(self, stage: str, detail: str = "") -> None:
        self._close()
        self._open = (stage, detail, time.perf_counter())

    def _close(self) -> None:
        if self._open is None:
            return
        stage, detail, began = self._open
        seconds = time.perf_counter() - began
        self.rows.append({"stage": stage, "detail": detail, "seconds": round(seconds, 4)})
        progress(f"  {self.verb} {stage}{f' ({detail})' if detail else ''}: {seconds:.2f} s")
        self._open = None

    def finish(self) -> float:
        """Close the last stage; the command's total seconds."""
        self._close()
        return time.perf_counter() - self._started

    def table(self, total_s: float) -> str:
        """Summary table: one row per stage, slowest first, and the total."""
        width = max([len(r["stage"]) for r in self.rows] + [len("total")])
        lines = [f"{'stage':<{width}}  {'detail':<18} {'seconds':>8} {'share':>6}"]
        for row in sorted(self.rows, key=lambda r: -r["seconds"]):
            share = 100 * row["seconds"] / total_s if total_s > 0 else 0.0
            lines.append(f"{row['stage']:<{width}}  {row['detail']:<18} {row['seconds']:>8.2f} {share:>5.0f}%")
        lines.append(f"{'total':<{width}}  {'':<18} {total_s:>8.2f} {100:>5.0f}%")
        return "\n".join(lines)


# -- argument types -------------------------------------------------------------------------------
def non_empty(what: str) -> Callable[[str], str]:
    """An argparse type refusing an empty value (``--mask ""``) as a usage error."""
    def check(value: str) -> str:
        if not value.replace("+", "").replace(",", "").strip():
            raise argparse.ArgumentTypeError(f"empty {what}; name at least one sensor (e.g. camera+imu)")
        return value
    return check


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not to the object it was when
    logging was configured: a process that swaps stderr (a test harness capturing it, a supervisor
    re-opening it) never has a reload thread log into a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: int | str, fmt: str, force: bool = False) -> None:
    """The process's log records on stderr (stdout is for results)."""
    logging.basicConfig(level=level, handlers=[StderrHandler()], format=fmt, force=force)
