"""Every learning method trains, exports and runs the per-mask plan with engine parity.

For each method (and each gate family), a briefly trained model must give the same class
probabilities and the same expert choices three ways, for every mask: the PyTorch training-side
forward, the plan executed over the PyTorch stage modules, and the plan executed over ONNX Runtime
engines built from the exported bundle; and fused engines (the whole forward in one graph, batch
1) must give the staged plan's answer on their mask. Each variant fuses the full mask and a
quarter of the others, in rotation, so that across the variants every mask's fused graph is
checked three times (exporting all 15 graphs for all 12 variants took a third of the suite).
Per-mask dedicated models export one bundle per mask (all 15 of them) and are checked on their own
mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgemoe.calibrate.collect import RecordingEngine
from edgemoe.core.mask import all_masks, full_mask, masks_to_bits
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split
from edgemoe.engines.build import build_engines
from edgemoe.engines.target import load_target
from edgemoe.export.bundle import write_bundle
from edgemoe.export.torch_engine import torch_engines
from edgemoe.model.gates import GATES
from edgemoe.model.registry import build_model
from edgemoe.runtime.executor import PlanExecutor
from edgemoe.runtime.loader import load_engine_bundle
from edgemoe.train.checkpoint import load_checkpoint, save_checkpoint
from edgemoe.train.dedicated import dedicated_config, own_mask, project_split
from edgemoe.train.masks import drop_cells
from edgemoe.train.trainer import Trainer, to_tensors
from tests.routing import assert_same_routing

BATCH = 8
ATOL = 1e-4
TRAIN_SAMPLES = 256

# (method, gate, fusion, readout); readout None is the method's own (slots for confsmoe, with its
# imputers after the experts; mean otherwise)
METHODS = [("smoe", "softmax", "none", None), ("smoe", "gaussian", "none", "slots"),
           ("dense", "softmax", "none", None), ("flexmoe", "softmax", "none", None),
           ("confsmoe", "softmax", "none", None), ("confsmoe", "gaussian", "none", "mean"),
           ("mars", "softmax", "none", None), ("mars", "laplace", "none", None),
           # cross-sensor fusion: a stage whose token count follows the mask
           ("smoe", "softmax", "attention", None), ("flexmoe", "softmax", "attention", "slots"),
           ("confsmoe", "softmax", "attention", None), ("mars", "softmax", "attention", "slots")]


def fused_masks_of(variant: int, num_sensors: int) -> tuple[int, ...]:
    """The full mask and every fourth other mask, starting at this variant's place in the rotation."""
    masks = all_masks(num_sensors)
    return tuple(sorted({full_mask(num_sensors), *masks[variant % 4 :: 4]}))


def short_config(config: ModelConfig, method: str, gate: str, fusion: str = "none",
                 readout: str | None = None) -> ModelConfig:
    return config.model_copy(update={
        "model": config.model.model_copy(update={"method": method, "gate": gate, "fusion": fusion,
                                                 "readout": readout}),
        "training": config.training.model_copy(update={"epochs": 1, "batch_size": 64}),
    })


def small(split: Split, n: int) -> Split:
    return split.subset(np.arange(min(n, len(split))))


def train_export_build(config: ModelConfig, train: Split, val: Split, out: Path,
                       select: list[int] | None = None, fuse: tuple[int, ...] = ()) -> tuple[torch.nn.Module, Path]:
    """Train briefly, round-trip the checkpoint, export the bundle (with fused graphs of ``fuse``,
    their experts routed: the form whose gather/scatter every method must get right) and build
    CPU engines."""
    result = Trainer(config, progress=False, log=lambda line: None, select_masks=select).fit(train, val)
    save_checkpoint(result.model, out / "model.safetensors", {"best_epoch": result.best_epoch})
    ckpt = load_checkpoint(out / "model.safetensors")
    write_bundle(ckpt, out / "bundle", fuse_masks=fuse, fused_experts="routed")
    build_engines(out / "bundle", load_target("cpu"), out / "engines")
    return ckpt.model, out / "engines"


def assert_parity(model: torch.nn.Module, engines_dir: Path, split: Split, masks: list[int]) -> None:
    config = model.config
    layout = model.layout()
    bundle = load_engine_bundle(engines_dir)
    assert bundle.layout == layout
    reference = PlanExecutor(layout, torch_engines(model, BATCH), BATCH, model.constants())
    deployed = PlanExecutor(layout, bundle.engines, bundle.max_batch, bundle.constants)
    fused = PlanExecutor(layout, bundle.engines, bundle.max_batch, bundle.constants, bundle.fused)
    part = small(split, BATCH)
    for mask in masks:
        present = torch.from_numpy(masks_to_bits(np.full(BATCH, mask), config.num_sensors))
        with torch.no_grad():
            out = model(to_tensors(part.frames), present)
        probs = torch.softmax(out.logits, -1).numpy()
        chosen = out.chosen[out.token_mask].reshape(-1).numpy()
        counts = np.bincount(chosen, minlength=layout.num_experts)
        frames = {i: part.frames[name] for i, name in enumerate(config.sensor_names) if mask >> i & 1}
        for executor in (reference, deployed):
            result = executor.run(mask, frames)
            np.testing.assert_allclose(result.probs, probs, atol=ATOL, err_msg=f"mask {mask}")
            per_decision = 1 if layout.route_by == "token" else int(out.token_mask[0].sum())
            assert_same_routing(result.expert_tokens, counts, per_decision, msg=f"mask {mask} top-k")
        if mask in bundle.fused:  # the mask's fused engine against its staged plan, frame by frame
            for i in range(BATCH):
                one = {s: f[i : i + 1] for s, f in frames.items()}
                got, want = fused.run(mask, one), deployed.run(mask, one)
                assert got.stages_run == (f"fused[{mask}]",) and len(want.stages_run) > 1
                np.testing.assert_allclose(got.probs, want.probs, atol=ATOL, err_msg=f"fused mask {mask}")
    bundle.close()


@pytest.mark.parametrize(("method", "gate", "fusion", "readout"), METHODS,
                         ids=[f"{m}-{g}" + ("-fusion" if f != "none" else "") + (f"-{r}" if r else "")
                              for m, g, f, r in METHODS])
def test_method_exports_with_engine_parity_on_every_mask(
    method: str, gate: str, fusion: str, readout: str | None, config: ModelConfig, dataset: dict[str, Split],
    tmp_path: Path
) -> None:
    cfg = short_config(config, method, gate, fusion, readout)
    fuse = fused_masks_of(METHODS.index((method, gate, fusion, readout)), config.num_sensors)
    model, engines = train_export_build(cfg, small(dataset["train"], TRAIN_SAMPLES),
                                        small(dataset["val"], 64), tmp_path, fuse=fuse)
    assert model.config.model.method == method
    assert model.layout().readout == (readout or ("slots" if method == "confsmoe" else "mean"))
    assert load_engine_bundle(engines).fused.keys() == set(fuse)
    assert_parity(model, engines, dataset["test"], all_masks(config.num_sensors))


def test_fused_rotation_checks_every_mask_three_times() -> None:
    counts = np.bincount([m for v in range(len(METHODS)) for m in fused_masks_of(v, 4) if m != full_mask(4)])
    assert len(counts) == 15 and (counts[1:] == 3).all() and counts[0] == 0


@pytest.mark.parametrize("mask", all_masks(4))
def test_dedicated_model_exports_one_bundle_for_its_mask(
    mask: int, config: ModelConfig, dataset: dict[str, Split], tmp_path: Path
) -> None:
    sub = short_config(dedicated_config(config, mask), "smoe", "softmax")
    train = project_split(small(dataset["train"], TRAIN_SAMPLES), config, mask)
    val = project_split(small(dataset["val"], 64), config, mask)
    model, engines = train_export_build(sub, train, val, tmp_path, own_mask(sub))
    assert model.config.num_sensors == bin(mask).count("1")
    assert_parity(model, engines, project_split(dataset["test"], config, mask), [full_mask(sub.num_sensors)])


def test_gate_families_follow_their_formulas() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    for name, expected in (("softmax", lambda x, w: x @ w.t()),
                           ("laplace", lambda x, w: -torch.cdist(x, w)),
                           ("gaussian", lambda x, w: -torch.cdist(x, w) ** 2)):
        gate = GATES[name](8, 3)
        assert gate.weight.abs().sum() > 0, f"{name}: W_g must not start at zero"
        torch.testing.assert_close(gate(x), expected(x, gate.weight), atol=1e-3, rtol=1e-4)


def test_random_rate_drops_the_asked_cells_and_keeps_one_sensor() -> None:
    rng = np.random.default_rng(0)
    recorded = np.full(1000, 0b1111)
    for rate in (0.1, 0.3, 0.5):
        bits = masks_to_bits(drop_cells(recorded, rate, 4, rng), 4)
        assert bits.any(axis=1).all()
        assert (~bits).sum() == int(1000 * 4 * rate)


def test_confidence_model_has_no_load_balancing_term(config: ModelConfig, dataset: dict[str, Split]) -> None:
    model = build_model(short_config(config, "confsmoe", "softmax")).train()
    part = small(dataset["train"], 16)
    present = torch.from_numpy(masks_to_bits(np.full(16, 0b0101), 4))
    out = model(to_tensors(part.frames), present)
    terms = model.loss_terms(out, torch.from_numpy(part.label))
    assert "load_balance" not in terms and set(terms) >= {"task", "confidence", "probe"}
    assert model.layout().mixing == "confidence" and model.layout().filler == "imputer"


def test_confidence_regression_reads_only_the_tokens_that_count(config: ModelConfig, dataset: dict[str, Split]) -> None:
    """With the slots readout a missing sensor's tokens are zero placeholders the runtime never
    routes: the probe, confidence and gate-regression terms get no gradient from them."""
    torch.manual_seed(0)
    cfg = short_config(config, "confsmoe", "softmax")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"fusion": "attention"})})
    model = build_model(cfg).train()
    part = small(dataset["train"], 8)
    present = torch.from_numpy(masks_to_bits(np.full(8, 0b0101), 4))  # scan and odom missing
    out = model(to_tensors(part.frames), present)
    terms = model.loss_terms(out, torch.from_numpy(part.label))
    total = terms["probe"] + terms["confidence"] + terms["gate_regression"]
    combined, clean = out.trace.combined, out.trace.routing.clean
    grads = torch.autograd.grad(total, (combined.picked, combined.weight, clean, combined.confidence),
                                allow_unused=True)
    counts = out.trace.token_mask.reshape(-1)
    assert not counts.all() and counts.any()
    for grad in grads:
        if grad is not None:
            assert float(grad[~counts].abs().sum()) == 0.0
    assert float(grads[0][counts].abs().sum()) > 0 and float(grads[2][counts].abs().sum()) > 0


def test_confsmoe_imputes_missing_slots_after_the_experts_from_their_outputs(
        config: ModelConfig, dataset: dict[str, Split]) -> None:
    """Conf-SMoE's public design: the experts see the present sensors' tokens only; each missing
    sensor's imputer runs after them, on the present sensors' expert outputs, and the head reads
    one slot per sensor."""
    torch.manual_seed(0)
    model = build_model(short_config(config, "confsmoe", "softmax")).eval()
    layout = model.layout()
    assert layout.imputes_after_experts and layout.readout_width == config.num_sensors * layout.dim
    batch, mask, d = 4, 0b0101, layout.dim  # camera and imu present; scan and odom imputed
    part = small(dataset["test"], batch)
    present = torch.from_numpy(masks_to_bits(np.full(batch, mask), config.num_sensors))
    with torch.no_grad():
        out = model(to_tensors(part.frames), present)
    token_mask = out.trace.token_mask
    assert not out.trace.tokens[~token_mask].any()  # nothing imputed before the experts
    outputs = out.trace.combined.tokens.reshape(*token_mask.shape, d)
    context = outputs[token_mask].reshape(batch, -1, d).numpy()
    engines = dict(torch_engines(model, batch))
    seen: list[dict[str, np.ndarray]] = []
    engines["imputer[scan]"] = RecordingEngine(engines["imputer[scan]"], seen)
    frames = {i: part.frames[name] for i, name in enumerate(config.sensor_names) if mask >> i & 1}
    result = PlanExecutor(layout, engines, batch).run(mask, frames)
    np.testing.assert_allclose(seen[0]["context"], context, atol=1e-5)
    np.testing.assert_allclose(result.probs, torch.softmax(out.logits, -1).numpy(), atol=1e-5)
    ran = result.stages_run
    last_expert = max(i for i, stage in enumerate(ran) if stage.startswith("expert["))
    assert ran[last_expert + 1 :] == ("imputer[scan]", "imputer[odom]", "head")


def test_sensor_probes_train_each_present_sensors_own_encoder(config: ModelConfig, dataset: dict[str, Split]) -> None:
    """The probes' term is the sum over present sensors of each probe's cross-entropy, and its
    gradient reaches only the encoders of sensors the samples show."""
    cfg = short_config(config, "smoe", "softmax")
    assert "sensor_probes" not in build_model(cfg).objectives  # off by default
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"sensor_probe_weight": 0.5})})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    part = small(dataset["train"], 16)
    mask = 0b1101  # scan absent
    present = torch.from_numpy(masks_to_bits(np.full(16, mask), 4))
    labels = torch.from_numpy(part.label)
    out = model(to_tensors(part.frames), present)
    term = model.loss_terms(out, labels)["sensor_probes"]
    probes, s = model.objectives["sensor_probes"].probes, cfg.model.tokens_per_sensor
    by_hand = sum(torch.nn.functional.cross_entropy(probes[i](out.trace.observed[:, i * s : (i + 1) * s].mean(1)), labels)
                  for i in (0, 2, 3))
    assert torch.allclose(term, 0.5 * by_hand)
    term.backward()
    grads = {name: enc.project.weight.grad for name, enc in model.encoders.items()}
    assert grads["scan"] is None or float(grads["scan"].abs().sum()) == 0.0
    assert all(float(grads[n].abs().sum()) > 0 for n in ("camera", "imu", "odom"))


@pytest.mark.parametrize(("method", "fusion"), [("smoe", "attention"), ("confsmoe", "none"), ("mars", "none")])
def test_solo_passes_run_each_present_sensor_alone_through_the_deployed_path(
        config: ModelConfig, dataset: dict[str, Split], method: str, fusion: str) -> None:
    """A solo pass is the model's own forward on the mask holding only that sensor (so it trains
    what the runtime runs when that sensor is the last one left); the term is the weight times the
    sum over sensors of each one's mean cross-entropy; its gradient reaches the encoders of the
    sensors the samples show, and no other where the filler drops missing sensors (Conf-SMoE's
    imputer encodes a prototype frame of a sensor no sample shows, by design)."""
    cfg = short_config(config, method, "softmax", fusion)
    assert "solo_passes" not in build_model(cfg).objectives  # off by default
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"solo_pass_weight": 0.5})})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    part = small(dataset["train"], 12)
    masks = np.array([0b1101, 0b0101, 0b1000] * 4)  # scan never shown
    present = torch.from_numpy(masks_to_bits(masks, 4))
    frames, labels = to_tensors(part.frames), torch.from_numpy(part.label)
    out = model(frames, present)
    objective = model.objectives["solo_passes"]
    term = objective(model, out, labels)["solo_passes"]
    by_hand = torch.zeros(())
    for sensor in (0, 2, 3):
        rows = present[:, sensor].nonzero()[:, 0]
        alone = torch.zeros(len(rows), 4, dtype=torch.bool)
        alone[:, sensor] = True
        logits = model({k: v[rows] for k, v in frames.items()}, alone).logits
        batched = objective.logits(model, frames, out.trace.observed, rows, torch.full_like(rows, sensor))
        torch.testing.assert_close(batched, logits, atol=1e-5, rtol=1e-5)
        by_hand = by_hand + torch.nn.functional.cross_entropy(logits, labels[rows])
    torch.testing.assert_close(term, 0.5 * by_hand, atol=1e-5, rtol=1e-5)
    model.train()
    term = model.loss_terms(model(frames, present), labels)["solo_passes"]
    model.zero_grad()
    term.backward()
    grads = {name: enc.project.weight.grad for name, enc in model.encoders.items()}
    if model.filler.kind == "drop":
        assert grads["scan"] is None or float(grads["scan"].abs().sum()) == 0.0
    assert all(float(grads[n].abs().sum()) > 0 for n in ("camera", "imu", "odom"))
