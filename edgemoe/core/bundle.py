"""Self-describing artifact directories: the model bundle and the engine bundle on disk.

Both are a directory with a ``manifest.json`` (typed in :mod:`edgemoe.core.manifest`). Reading
checks the signature when a trusted key is given, then validates the manifest once; every file is
checked against its sha256 when it is used, and a mismatch is refused with a message naming both
sides and the fix. Writing goes to a temporary sibling directory whose files are flushed to disk
before it is renamed into place, so a failed (or power-cut) export or build never leaves a
directory that could be mistaken for a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgemoe.core.errors import BundleError
from edgemoe.core.manifest import (
    ENGINE_KIND, KINDS, MANIFEST, MODEL_KIND, EngineManifest, FileRef, ModelManifest, dump_manifest, parse_manifest,
)
from edgemoe.core.signing import TrustedKey


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read(directory: Path, kind: str, trust: TrustedKey | None) -> tuple[bytes, object]:
    """The manifest's bytes are read once: the signature is checked on exactly what is parsed."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{directory}: no {MANIFEST} (is this an {kind} directory?)")
    body = path.read_bytes()
    if trust is not None:
        trust.verify(directory, body)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if kind == "":  # either kind, as its format says
        found = data.get("format", "") if isinstance(data, dict) else ""
        kind = ENGINE_KIND if str(found).startswith(ENGINE_KIND + "/") else MODEL_KIND
    return body, parse_manifest(data, kind, str(path))


def read_model_manifest(directory: Path, trust: TrustedKey | None = None) -> ModelManifest:
    _, manifest = _read(directory, MODEL_KIND, trust)
    assert isinstance(manifest, ModelManifest)
    return manifest


def read_engine_manifest(directory: Path, trust: TrustedKey | None = None) -> EngineManifest:
    _, manifest = _read(directory, ENGINE_KIND, trust)
    assert isinstance(manifest, EngineManifest)
    return manifest


def verify_file(directory: Path, entry: FileRef, what: str, fix: str) -> Path:
    """Check that ``entry.file`` exists under ``directory`` and matches ``entry.sha256``."""
    path = Path(directory) / entry.file
    if not path.is_file():
        raise BundleError(f"{what}: file '{entry.file}' is missing from {directory}: {fix}")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise BundleError(
            f"{what}: sha256 mismatch for '{entry.file}' (manifest {entry.sha256[:12]}…, "
            f"file {actual[:12]}…): the file was modified or corrupted; {fix}"
        )
    return path


def read_constants(directory: Path, entry: FileRef | None, fix: str) -> dict[str, np.ndarray]:
    """The stored filler tokens per sensor (``constants.npz``), checked against their sha256."""
    if entry is None:
        return {}
    with np.load(verify_file(directory, entry, "constants", fix), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def file_refs(manifest: ModelManifest | EngineManifest) -> Iterator[tuple[str, FileRef]]:
    """Every file the manifest vouches for, with what it is (for checks before signing)."""
    if manifest.constants is not None:
        yield "constants", manifest.constants
    if isinstance(manifest, ModelManifest):
        for stage, entry in (*manifest.stages.items(), *((f.stage, f) for f in manifest.fused.values())):
            for precision, variant in entry.variants.items():
                yield f"stage '{stage}' ({precision})", variant
        if manifest.calibration is not None:
            yield "calibration sets", manifest.calibration.sets
    else:
        for stage, engine in (*manifest.engines.items(), *((f.stage, f) for f in manifest.fused.values())):
            yield f"engine '{stage}'", engine


def verify_bundle(directory: Path) -> tuple[bytes, ModelManifest | EngineManifest]:
    """Read a bundle of either kind and check every file it lists; return the manifest's bytes
    (what a signature covers) and the manifest."""
    body, manifest = _read(directory, "", None)
    assert isinstance(manifest, (ModelManifest, EngineManifest))
    fix = KINDS[MODEL_KIND if isinstance(manifest, ModelManifest) else ENGINE_KIND][2]
    for what, ref in file_refs(manifest):
        verify_file(directory, ref, what, fix)
    return body, manifest


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to disk (a rename is only as durable as the
    data it points at)."""
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(directory))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def staged_directory(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes ``final`` only if the block succeeds.

    The temporary name starts with a dot and is never a name anything loads; its contents are
    fsynced before the rename, and the parent directory after it. When ``final`` is a symlink
    (the deployment in docs/daemon.md), the new directory gets a name of its own beside it and
    the link is repointed in one rename, so a reader sees the old bundle or the new one and
    nothing else. Replacing a plain directory is two renames (old aside, new in): a power cut
    between them leaves no ``final`` at all, never a partial one."""
    final = Path(final)
    if final.exists() and not overwrite:
        if not final.is_dir() or any(final.iterdir()):
            raise BundleError(f"{final} exists and is not empty (pass --force to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.is_symlink():
            _swap_link(final, tmp)
        elif final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_link(link: Path, tmp: Path) -> None:
    """Give ``tmp`` a versioned name beside ``link`` and repoint ``link`` at it atomically."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    versioned = link.with_name(f"{link.name}-{stamp}")
    n = 1
    while versioned.exists():
        versioned, n = link.with_name(f"{link.name}-{stamp}.{n}"), n + 1
    os.replace(tmp, versioned)
    new_link = link.with_name(f".{link.name}.link")
    new_link.unlink(missing_ok=True)
    new_link.symlink_to(versioned.name)
    os.replace(new_link, link)


def write_manifest(directory: Path, manifest: ModelManifest | EngineManifest) -> None:
    (Path(directory) / MANIFEST).write_text(dump_manifest(manifest))
