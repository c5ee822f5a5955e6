"""``edgemoe run ENGINES --config DAEMON.yaml``: the sensor-loop daemon. Never imports torch."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edgemoe.daemon.config import DaemonConfig
from edgemoe.daemon.service import Daemon


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engines", type=Path, help="engine bundle directory (or a symlink to one)")
    parser.add_argument("--config", type=Path, required=True, help="daemon YAML (see docs/daemon.md)")
    parser.add_argument("--trust", type=Path, default=None, metavar="PUBKEY",
                        help="run (and reload) only bundles signed by this Ed25519 public key (overrides the "
                             "config's 'trust')")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long (tests, soak)")
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = DaemonConfig.from_yaml(args.config)
    if args.trust is not None:
        config = config.model_copy(update={"trust": args.trust})
    daemon = Daemon(args.engines, config)
    daemon.install_signals()
    print(json.dumps({"ready": daemon.addresses}), flush=True)
    summary = daemon.run(args.max_seconds)
    summary["torch_imported"] = "torch" in sys.modules  # must stay False: devices run without torch
    print(json.dumps({"stopped": summary}), flush=True)
    return 0
