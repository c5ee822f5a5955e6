"""Checkpoints: one safetensors file whose metadata carries the schema and a content hash.

safetensors stores raw tensors and a string map, so loading a checkpoint never unpickles code.
The model config travels inside (``metadata["config"]``), so nothing downstream re-declares it.
``metadata["content_sha256"]`` hashes everything else in the file (the tensor table, the other
metadata and every tensor byte) and is checked on load, so a flipped byte is refused instead of
exported; the model bundle records it with the file's own sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save

from edgemoe.core.errors import EdgeMoEError
from edgemoe.core.schema import ModelConfig
from edgemoe.model.registry import build_model
from edgemoe.model.smoe import SparseMoE

FORMAT = "edgemoe-checkpoint/1"
CONTENT_HASH = "content_sha256"


class CheckpointError(EdgeMoEError):
    """A checkpoint file is missing, not ours, or does not match its own schema."""


@dataclass
class Checkpoint:
    model: SparseMoE
    config: ModelConfig
    info: dict[str, Any] = field(default_factory=dict)  # history, validation table, seed, ...
    path: Path | None = None
    sha256: str = ""  # of the file's bytes
    content_sha256: str = ""  # the hash it carries, checked on load


def content_sha256(data: bytes) -> str:
    """The hash of a safetensors file's header (its own hash left out) and tensor bytes."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8: 8 + size])
    header.get("__metadata__", {}).pop(CONTENT_HASH, None)
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    digest.update(memoryview(data)[8 + size:])
    return digest.hexdigest()


def save_checkpoint(model: SparseMoE, path: Path, info: dict[str, Any]) -> None:
    """Write atomically: a crash leaves the previous checkpoint, never half a file."""
    metadata = {"format": FORMAT, "config": model.config.to_json(), "info": json.dumps(info)}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata[CONTENT_HASH] = content_sha256(save(state, metadata=metadata))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(save(state, metadata=metadata))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> Checkpoint:
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        data = Path(path).read_bytes()
        state = load(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format '{metadata.get('format')}' is not '{FORMAT}'")
    recorded, actual = metadata.get(CONTENT_HASH), content_sha256(data)
    if recorded is None:
        raise CheckpointError(f"{path}: no {CONTENT_HASH} in its metadata (written by an older edgemoe); retrain")
    if recorded != actual:
        raise CheckpointError(f"{path}: content sha256 mismatch (recorded {recorded[:12]}…, file {actual[:12]}…): "
                              "the checkpoint was modified or corrupted; retrain or restore it")
    config = ModelConfig.from_json(metadata["config"], source=f"{path} (embedded config)")
    model = build_model(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match method '{config.model.method}' "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    model.eval()
    return Checkpoint(model, config, json.loads(metadata.get("info", "{}")), Path(path), hashlib.sha256(data).hexdigest(), actual)
