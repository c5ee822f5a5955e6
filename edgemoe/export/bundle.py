"""``edgemoe export``: a checkpoint -> a model bundle (one ONNX per stage + manifest).

Bundle layout::

    manifest.json          a ModelManifest (edgemoe/core/manifest.py): schema, stage layout, the
                           checkpoint's sha256, stages with tensors and sha256, tool versions,
                           expected accuracy per mask, precision choices (added by calibrate)
    manifest.sig           optional: the Ed25519 signature 'edgemoe sign' writes
    stages/<stage>.onnx    one single-file graph per stage (fp32; int8/fp16 variants beside it)
    constants.npz          stored filler tokens per sensor, when the method's filler is 'constant'
    fused/fused_<mask>.onnx   optional: one mask's whole forward at batch 1 (hot masks)
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from edgemoe.core.bundle import sha256_file, staged_directory, write_manifest
from edgemoe.core.manifest import (
    CheckpointRef, ExpectedAccuracy, FileRef, ModelManifest, PrecisionChoice, StageEntry, Variant,
)
from edgemoe.core.stages import stage_file_stem
from edgemoe.export.fused import ExpertForm, write_fused
from edgemoe.export.onnx_stage import EXPORTER, OPSET, export_stage
from edgemoe.train.checkpoint import Checkpoint
from edgemoe.train.evaluate import EvalTable

DEFAULT_MAX_BATCH = 8


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for pkg in ("edgemoe", "torch", "onnx", "onnxscript", "onnxsim", "onnxruntime", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def expected_accuracy(table: EvalTable) -> ExpectedAccuracy:
    """The per-mask accuracy the daemon attaches to each prediction."""
    return ExpectedAccuracy(split=table.split, masks={r.mask: r.accuracy for r in table.rows}, mean=table.mean)


def checkpoint_ref(ckpt: Checkpoint) -> CheckpointRef:
    if ckpt.path is None or not ckpt.content_sha256:
        raise ValueError("export needs a checkpoint loaded from its file (load_checkpoint), to record its sha256")
    return CheckpointRef(file=ckpt.path.name, sha256=ckpt.sha256, content_sha256=ckpt.content_sha256)


def write_bundle(
    ckpt: Checkpoint,
    out: Path,
    table: EvalTable | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    force: bool = False,
    on_stage: Callable[[str], None] = lambda name: None,
    fuse_masks: Sequence[int] = (),
    fused_experts: ExpertForm | Literal["auto"] = "auto",
) -> ModelManifest:
    """Export every stage (and a fused graph per mask of ``fuse_masks``, its experts in the form
    ``fused_experts``) into ``out``, atomically."""
    model = ckpt.model.eval()
    layout = model.layout()
    max_dims = layout.max_dims(max_batch)
    if table is None and "val_table" in ckpt.info:
        table = EvalTable.from_dict(ckpt.info["val_table"])
    stages: dict[str, StageEntry] = {}
    source = checkpoint_ref(ckpt)
    with staged_directory(out, overwrite=force) as tmp:
        (tmp / "stages").mkdir()
        for name, stage in model.stage_modules().items():
            on_stage(name)
            graph = export_stage(name, stage, max_dims)
            rel = f"stages/{stage_file_stem(name)}.onnx"
            onnx.save_model(graph, tmp / rel, save_as_external_data=False)
            stages[name] = StageEntry(
                inputs=tuple(stage.inputs), outputs=tuple(stage.outputs),
                variants={"fp32": Variant(file=rel, sha256=sha256_file(tmp / rel))},
                precision=PrecisionChoice(choice="fp32", reason="exported; run 'edgemoe calibrate' for int8/fp16"),
            )
        manifest = ModelManifest(
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            config=ckpt.config,
            layout=layout,
            max_dims=max_dims,
            checkpoint=source,
            opset=OPSET,
            exporter=EXPORTER,
            tools=tool_versions(),
            stages=stages,
            constants=_write_constants(model.constants() if layout.filler == "constant" else {}, tmp),
            fused=write_fused(model, sorted(set(fuse_masks)), tmp, on_stage, fused_experts),
            expected_accuracy=expected_accuracy(table) if table else None,
            training={k: ckpt.info[k] for k in ("best_epoch", "seed") if k in ckpt.info},
        )
        write_manifest(tmp, manifest)
    return manifest


def _write_constants(constants: dict[str, np.ndarray], directory: Path) -> FileRef | None:
    if not constants:
        return None
    path = directory / "constants.npz"
    np.savez(path, **{k: v.astype(np.float32) for k, v in constants.items()})
    return FileRef(file="constants.npz", sha256=sha256_file(path))
