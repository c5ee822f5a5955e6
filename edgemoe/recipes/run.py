"""``edgemoe run ENGINES --config DAEMON.yaml``: the sensor-loop daemon. Never imports torch."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgemoe.recipes.conventions import OUTPUT, configure_logging

if TYPE_CHECKING:
    from edgemoe.daemon.config import DaemonConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engines", type=Path, help="engine bundle directory (or a symlink to one)")
    parser.add_argument("--config", type=Path, required=True, help="daemon YAML (see docs/daemon.md)")
    parser.add_argument("--trust", type=Path, default=None, metavar="PUBKEY",
                        help="run (and reload) only bundles signed by this Ed25519 public key (overrides the "
                             "config's 'trust')")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long (tests, soak)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=None,
                        help="daemon log level (default INFO; WARNING with -q, DEBUG with -vv)")
    parser.set_defaults(func=run, interrupted="the daemon stopped")


def run(args: argparse.Namespace) -> int:
    from edgemoe.daemon.config import DaemonConfig
    from edgemoe.daemon.service import Daemon

    level = args.log_level or ("WARNING" if OUTPUT.quiet else "DEBUG" if OUTPUT.verbose > 1 else "INFO")
    configure_logging(level, "%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    config = DaemonConfig.from_yaml(args.config)
    if args.trust is not None:
        config = config.model_copy(update={"trust": args.trust})
    try:
        daemon = Daemon(args.engines, config)
    except OSError as exc:
        if exc.filename is not None:  # a file, named already
            raise
        raise OSError(exc.errno, f"{exc.strerror or exc} ({unbindable(config, args.config)})") from None
    daemon.install_signals()
    print(json.dumps({"ready": daemon.addresses}), flush=True)
    summary = daemon.run(args.max_seconds)
    summary["torch_imported"] = "torch" in sys.modules  # must stay False: devices run without torch
    print(json.dumps({"stopped": summary}), flush=True)
    return 0


def unbindable(config: DaemonConfig, source: Path) -> str:
    """Which socket of the config cannot be opened: tried again one by one to name it."""
    if config.metrics.enabled and config.metrics.port:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((config.metrics.host, config.metrics.port))
        except OSError:
            return f"{source} key 'metrics.port': cannot listen on {config.metrics.host}:{config.metrics.port}"
        finally:
            probe.close()
    paths = [(f"sources.network.{i}.path", e.path) for i, e in enumerate(config.sources.network) if e.path]
    if config.flags.control is not None and config.flags.control.path:
        paths.append(("flags.control.path", config.flags.control.path))
    for key, path in paths:
        if not Path(path).parent.is_dir():
            return f"{source} key '{key}': no directory {Path(path).parent} for the socket {path}"
        if not os.access(Path(path).parent, os.W_OK | os.X_OK):
            return f"{source} key '{key}': cannot create the socket {path} (directory not writable)"
        if len(os.fsencode(str(path))) > UNIX_PATH_MAX:
            return f"{source} key '{key}': socket path longer than {UNIX_PATH_MAX} bytes: {path}"
    return f"a socket of {source}"

