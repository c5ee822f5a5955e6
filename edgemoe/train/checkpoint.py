"""Checkpoints: one safetensors file whose metadata carries the schema.

safetensors stores raw tensors and a string map, so loading a checkpoint never unpickles code.
The model config travels inside (``metadata["config"]``), so nothing downstream re-declares it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from edgemoe.core.errors import EdgeMoEError
from edgemoe.core.schema import ModelConfig
from edgemoe.model.registry import build_model
from edgemoe.model.moe import MoEModel

FORMAT = "edgemoe-checkpoint/1"


class CheckpointError(EdgeMoEError):
    """A checkpoint file is missing, not ours, or does not match its own schema."""


@dataclass
class Checkpoint:
    model: MoEModel
    config: ModelConfig
    info: dict[str, Any] = field(default_factory=dict)  # history, validation table, seed, ...


def save_checkpoint(model: MoEModel, path: Path, info: dict[str, Any]) -> None:
    """Write atomically: a crash leaves the previous checkpoint, never half a file."""
    metadata = {"format": FORMAT, "config": model.config.to_json(), "info": json.dumps(info)}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
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
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format '{metadata.get('format')}' is not '{FORMAT}'")
    config = ModelConfig.from_json(metadata["config"], source=f"{path} (embedded config)")
    model = build_model(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match method '{config.model.method}' "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    model.eval()
    return Checkpoint(model, config, json.loads(metadata.get("info", "{}")))
