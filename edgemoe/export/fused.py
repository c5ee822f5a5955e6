"""Fused per-mask graphs: one mask's whole forward as one batch-1 graph, for hot masks.

Only that mask's encoders (the others fold away), its fillers, gate, top-k, the experts and the
head, so a hot mask runs as one engine call instead of one per stage, trading memory (a second
copy of the weights) for dispatch. The experts take one of two forms (``FusedEntry.experts``):
``dense``, every expert on every token as in training (static shapes; what TensorRT builds), or
``routed``, each expert on the present tokens routed to it (gather/scatter by the in-graph top-k,
:meth:`ExpertBank.routed`), which reads only the chosen experts' weights. ``auto`` exports both,
times them with ONNX Runtime and keeps the faster per mask: routed wins where few tokens meet many
experts (one cheap sensor on the realistic config), dense where every expert is hit anyway.

The bundle carries them beside the stages (``fused`` in the manifest, written here); ``edgemoe
calibrate`` adds their INT8/FP16 variants (``edgemoe.calibrate.fused``); ``edgemoe build --fuse``
builds the chosen ones; the runtime's executor (``edgemoe.runtime.executor``) runs a fused mask's
single frames through its engine and every batch through the staged plan, and
``tests/test_methods.py`` checks the two agree for every method; ``edgemoe profile``
(``edgemoe.profile.fused``) measures the latency gained and the memory paid per fused mask and
chooses which masks are worth it. Names, dims and tensors come from the stage table
(``edgemoe.core.stages``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch
from torch import nn

from edgemoe.core.bundle import sha256_file
from edgemoe.core.manifest import FusedEntry, Variant
from edgemoe.core.mask import mask_names, masks_to_bits
from edgemoe.core.stages import fused_stage, fused_tensors, stage_file_stem
from edgemoe.export.monolithic import check_graph, export_graph
from edgemoe.export.onnx_stage import ExportError
from edgemoe.model.moe import MoEModel

FUSED_DIR = "fused"
ExpertForm = Literal["dense", "routed"]
EXPERT_FORMS: tuple[ExpertForm, ...] = ("dense", "routed")
FORM_TIMING_RUNS = 200  # per form, interleaved, after as many warm-up runs


class FusedMask(nn.Module):
    """``(*present frames) -> probs`` for one mask at batch 1: the model's own forward with the
    mask baked in as a constant. The missing sensors' inputs are constant zeros, so constant
    folding removes their encoders (and the filler work that depends only on the mask) from the
    graph; every method's forward works unchanged, which is what keeps fused and staged answers
    equal."""

    def __init__(self, model: MoEModel, mask: int, experts: ExpertForm = "dense") -> None:
        super().__init__()
        self.model = model.eval()
        self.experts = experts
        self.specs = model.config.sensors
        self.present_names = mask_names(mask, model.config.sensor_names)
        bits = masks_to_bits(np.array([mask]), model.config.num_sensors)
        self.register_buffer("present", torch.from_numpy(bits), persistent=False)

    def forward(self, *frames: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.present_names, frames))
        inputs = {s.name: given.get(s.name, torch.zeros(1, *s.shape)) for s in self.specs}
        if self.experts == "routed":
            return torch.softmax(self.model.routed_logits(inputs, self.present), dim=-1)
        return torch.softmax(self.model(inputs, self.present).logits, dim=-1)


def export_fused(model: MoEModel, mask: int, experts: ExpertForm = "dense", simplify: bool = True) -> onnx.ModelProto:
    """One mask's forward as one batch-1 graph (inputs: the present sensors' frames, named as
    sensors), checked against the model on random frames."""
    wrapper = FusedMask(model, mask, experts)
    specs = [model.config.sensor(n) for n in wrapper.present_names]
    if not specs:
        raise ExportError(f"{fused_stage(mask)}: the empty mask has no forward to fuse")
    gen = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(1, *s.shape, generator=gen) for s in specs)
    graph = export_graph(wrapper, example, [s.name for s in specs], None, fused_stage(mask), simplify)
    with torch.no_grad():
        want = wrapper(*example).numpy()
    check_graph(graph, example, want, fused_stage(mask))
    return graph


def typical_frames(model: MoEModel, mask: int) -> dict[str, np.ndarray]:
    """Batch-1 frames of the mask's sensors drawn around the training split's per-channel mean and
    spread (each encoder's standardisation), so the gate spreads their tokens over the experts
    the way it spreads real frames'."""
    gen = torch.Generator().manual_seed(0)
    frames = {}
    for name in mask_names(mask, model.config.sensor_names):
        stats = model.encoders[name].standardize
        noise = torch.randn(1, *model.config.sensor(name).shape, generator=gen)
        frames[name] = (noise * stats.std + stats.mean).numpy().astype(np.float32)
    return frames


def time_forms(graphs: dict[ExpertForm, onnx.ModelProto], frames: dict[str, np.ndarray],
               runs: int = FORM_TIMING_RUNS) -> dict[ExpertForm, float]:
    """p50 µs of each form on one ONNX Runtime thread and the same ``frames``, the forms
    interleaved run by run so load and cache state hit them alike."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {form: ort.InferenceSession(g.SerializeToString(), options, providers=["CPUExecutionProvider"])
                for form, g in graphs.items()}
    took: dict[ExpertForm, list[float]] = {form: [] for form in sessions}
    for i in range(2 * runs):
        for form, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, frames)
            if i >= runs:
                took[form].append(time.perf_counter() - t0)
    return {form: float(np.median(t)) * 1e6 for form, t in took.items()}


def write_fused(model: MoEModel, masks: list[int], directory: Path,
                on_stage: Callable[[str], None] = lambda stage: None,
                experts: ExpertForm | Literal["auto"] = "auto") -> dict[int, FusedEntry]:
    """Export the fused graph of each mask into ``directory/fused/``; returns the manifest's
    ``fused`` section, ``{mask: entry}`` (batch-1 inputs named as the present sensors). With
    ``experts='auto'`` each mask keeps the faster of its two forms, timed here (recorded as
    ``form_us``)."""
    entries: dict[int, FusedEntry] = {}
    config = model.config
    frames = {s.name: s.shape for s in config.sensors}
    for mask in masks:
        stage = fused_stage(mask)
        on_stage(stage)
        forms = EXPERT_FORMS if experts == "auto" else (experts,)
        graphs = {form: export_fused(model, mask, form) for form in forms}
        timed = time_forms(graphs, typical_frames(model, mask)) if len(graphs) > 1 else {}
        form = min(timed, key=timed.__getitem__) if timed else forms[0]
        graph = graphs[form]
        rel = f"{FUSED_DIR}/{stage_file_stem(stage)}.onnx"
        (directory / FUSED_DIR).mkdir(exist_ok=True)
        onnx.save_model(graph, directory / rel, save_as_external_data=False)
        sensors = mask_names(mask, config.sensor_names)
        inputs, outputs = fused_tensors(model.layout(), frames, sensors)
        entries[mask] = FusedEntry(
            stage=stage, sensors=tuple(sensors), inputs=inputs, outputs=outputs,
            experts=form, form_us={f: round(us, 1) for f, us in timed.items()},
            variants={"fp32": Variant(file=rel, sha256=sha256_file(directory / rel))},
        )
    return entries
