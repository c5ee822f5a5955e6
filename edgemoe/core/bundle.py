"""Self-describing artifact directories: the model bundle and the engine bundle.

Both are a directory with a ``manifest.json``. Loading validates format, files and sha256 of
every file the manifest lists, and refuses a mismatch with a message naming both sides and the
fix. Writing goes to a temporary sibling directory that is renamed into place only when complete,
so a failed export or build never leaves half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgemoe.core.errors import BundleError
from edgemoe.core.plan import StageLayout
from edgemoe.core.schema import ModelConfig

MODEL_FORMAT = "edgemoe-bundle/1"
ENGINE_FORMAT = "edgemoe-engines/1"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(directory: Path, expected_format: str) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{directory}: no {MANIFEST} (is this an {expected_format} directory?)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    found = manifest.get("format")
    if found != expected_format:
        raise BundleError(f"{path}: format '{found}' but '{expected_format}' expected")
    return manifest


def verify_file(directory: Path, entry: Mapping[str, Any], what: str, fix: str) -> Path:
    """Check that ``entry['file']`` exists under ``directory`` and matches ``entry['sha256']``."""
    path = Path(directory) / entry["file"]
    if not path.is_file():
        raise BundleError(f"{what}: file '{entry['file']}' is missing from {directory}: {fix}")
    actual = sha256_file(path)
    if actual != entry["sha256"]:
        raise BundleError(
            f"{what}: sha256 mismatch for '{entry['file']}' (manifest {entry['sha256'][:12]}…, "
            f"file {actual[:12]}…): the file was modified or corrupted; {fix}"
        )
    return path


def config_of(manifest: Mapping[str, Any], source: str) -> ModelConfig:
    return ModelConfig.from_dict(manifest["config"], f"{source} (manifest 'config')")


def layout_of(manifest: Mapping[str, Any]) -> StageLayout:
    if "layout" not in manifest:
        raise BundleError("manifest has no 'layout'")
    return StageLayout.from_dict(manifest["layout"])


@contextmanager
def staged_directory(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``final`` only if the block succeeds."""
    final = Path(final)
    if final.exists() and not overwrite:
        if not final.is_dir() or any(final.iterdir()):
            raise BundleError(f"{final} exists and is not empty (pass --force to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    (Path(directory) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
