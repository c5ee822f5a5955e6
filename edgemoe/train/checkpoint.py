"""Checkpoints: one safetensors file whose metadata carries the schema and a content hash.

safetensors stores raw tensors and a string map, so loading a checkpoint never unpickles code.
The model config travels inside (``metadata["config"]``), so nothing downstream re-declares it.

While training runs, the checkpoint written after each epoch also carries what ``--resume`` needs
(the last weights, the optimiser and schedule, the history) under the ``resume/`` key prefix and
``metadata["resume"]``; :func:`load_checkpoint` ignores them, so any epoch's file is also a plain
checkpoint of the best model so far, loadable by one process whatever the world size that wrote it.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save

from edgemoe.core.errors import EdgeMoEError
from edgemoe.core.schema import ModelConfig
from edgemoe.model.registry import build_model
from edgemoe.model.moe import MoEModel

FORMAT = "edgemoe-checkpoint/1"
RESUME = "resume/"
CONTENT_HASH = "content_sha256"


class CheckpointError(EdgeMoEError):
    """A checkpoint file is missing, not ours, or does not match its own schema."""


@dataclass
class Checkpoint:
    model: MoEModel
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


@dataclass
class ResumeState:
    """Where a run stood after epoch ``epoch``: enough to continue it bit for bit."""

    epoch: int
    model: dict[str, torch.Tensor]  # the last weights (the checkpoint's own are the best ones)
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    progress: dict[str, Any]  # history, best epoch and score, validation table, global batch

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"{RESUME}model/{k}": v for k, v in self.model.items()}
        for pid, slots in self.optimizer["state"].items():
            out.update({f"{RESUME}optim/{pid}/{k}": v for k, v in slots.items()})
        return out

    def metadata(self) -> str:
        groups = self.optimizer["param_groups"]
        return json.dumps({"epoch": self.epoch, "param_groups": groups, "scheduler": self.scheduler,
                           "progress": self.progress})

    @classmethod
    def parse(cls, tensors: dict[str, torch.Tensor], metadata: str) -> ResumeState:
        meta = json.loads(metadata)
        model: dict[str, torch.Tensor] = {}
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            kind, _, rest = key[len(RESUME):].partition("/")
            if kind == "model":
                model[rest] = value
            else:
                pid, _, name = rest.partition("/")
                slots.setdefault(int(pid), {})[name] = value
        optimizer = {"state": slots, "param_groups": meta["param_groups"]}
        return cls(meta["epoch"], model, optimizer, meta["scheduler"], meta["progress"])


def save_checkpoint(model: MoEModel, path: Path, info: dict[str, Any], resume: ResumeState | None = None,
                    weights: Mapping[str, torch.Tensor] | None = None) -> None:
    """Write ``weights`` (default: the model's own) atomically: a crash leaves the previous
    checkpoint, never half a file. ``resume`` adds what continuing the run needs."""
    metadata = {"format": FORMAT, "config": model.config.to_json(), "info": json.dumps(info)}
    state = {k: v.detach().cpu().contiguous() for k, v in (weights or model.state_dict()).items()}
    if resume is not None:
        state.update({k: v.detach().cpu().contiguous() for k, v in resume.tensors().items()})
        metadata["resume"] = resume.metadata()
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


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], str, str]:
    """Tensors and metadata of a checkpoint whose content hash holds, the file's sha256 and the
    content hash."""
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
    return state, metadata, hashlib.sha256(data).hexdigest(), actual


def load_resume_state(path: Path) -> tuple[Checkpoint, ResumeState]:
    """The best model so far and where the run stood, from a checkpoint written mid-training."""
    tensors, metadata, _, _ = _read(path)
    if "resume" not in metadata:
        raise CheckpointError(f"{path}: no training state to resume (the run that wrote it finished; "
                              "start a new run or choose another --out)")
    resume = ResumeState.parse({k: v for k, v in tensors.items() if k.startswith(RESUME)}, metadata["resume"])
    return load_checkpoint(path), resume


def _as_trained(config: dict) -> dict:
    """An embedded config with the settings its weights were trained under: a fusion stage from
    before sensor messages (its config has no ``fusion_messages`` key) has none; a Conf-SMoE model
    from before the slots readout (no ``readout`` key) pools its tokens into one."""
    model = config.get("model")
    if isinstance(model, dict) and model.get("fusion", "none") != "none" and "fusion_messages" not in model:
        model["fusion_messages"] = False
    if isinstance(model, dict) and model.get("method") == "confsmoe" and "readout" not in model:
        model["readout"] = "mean"
    return config


def load_checkpoint(path: Path) -> Checkpoint:
    state, metadata, sha256, content = _read(path)
    state = {k: v for k, v in state.items() if not k.startswith(RESUME)}
    raw = _as_trained(json.loads(metadata["config"]))
    config = ModelConfig.from_dict(raw, source=f"{path} (embedded config)")
    model = build_model(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match method '{config.model.method}' "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    model.eval()
    return Checkpoint(model, config, json.loads(metadata.get("info", "{}")), Path(path), sha256, content)
