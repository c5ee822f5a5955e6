"""Calibration: routing-aware sets, TensorRT-legal INT8 Q/DQ graphs, FP16 variants, automatic
precision per stage written atomically into the bundle."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from edgemoe.calibrate.collect import collect_routing_aware, draw_masks
from edgemoe.calibrate.dynamic import large_products
from edgemoe.calibrate.int8 import EXTRA_OPTIONS, StageSetReader
from edgemoe.calibrate.pipeline import CalibrationResult, calibrate_bundle
from edgemoe.calibrate.qdq import QDQError, validate_qdq
from edgemoe.calibrate.precision import choose_precisions
from edgemoe.calibrate.recipe import Budgets, CalibrationRecipe, load_recipe
from edgemoe.calibrate.sets import CalibrationError, content_sha256, load_sets, save_sets
from edgemoe.calibrate.variants import SIMULATED, VariantEngines
from edgemoe.cli import main
from edgemoe.core.bundle import read_model_manifest, sha256_file
from edgemoe.core.engine import run_engine
from edgemoe.core.errors import BundleError
from edgemoe.runtime.executor import top_k_indices
from edgemoe.core.schema import ModelConfig
from edgemoe.core.stages import expert_stage
from edgemoe.data.dataset import load_dataset
from edgemoe.engines.build import build_engines
from edgemoe.engines.onnxruntime import backend as ort_backend
from edgemoe.engines.onnxruntime.cpu import cpu_flags, int8_products_saturate
from edgemoe.engines.target import load_target
from edgemoe.export.bundle import write_bundle
from edgemoe.model.registry import build_model
from edgemoe.recipes.build import stage_warnings
from edgemoe.runtime.runtime import Runtime
from edgemoe.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from edgemoe.train.evaluate import EvalTable, MaskScore

# dynamic_min_weight_kib: the tiny model's projections and experts (>= 8 KiB) take int8-dynamic,
# its gate (512 B) does not
SMALL = dict(samples_per_stage=128, min_samples=32, min_tokens_per_expert=64, draw_frames=256,
             max_frames=4096, batch=64, dynamic_min_weight_kib=4)


@pytest.fixture(scope="module")
def recipe() -> CalibrationRecipe:
    return load_recipe("default").with_overrides(SMALL)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path, dataset_dir: Path,
               recipe: CalibrationRecipe) -> tuple[Path, CalibrationResult]:
    bundle = tmp_path_factory.mktemp("calibrated") / "bundle"
    shutil.copytree(bundle_dir, bundle)
    return bundle, calibrate_bundle(bundle, dataset_dir, recipe)


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(bundle_dir, out)
    return out


# -- the calibrated bundle ---------------------------------------------------------------------
def test_every_stage_gains_validated_int8_and_fp16_variants(calibrated: tuple[Path, CalibrationResult]) -> None:
    bundle, _ = calibrated
    manifest = read_model_manifest(bundle)
    for stage, entry in manifest.stages.items():
        assert set(entry.variants) == {"fp32", "int8", "fp16", "int8-dynamic"}, stage
        for variant in entry.variants.values():
            assert sha256_file(bundle / variant.file) == variant.sha256
        int8 = entry.variants["int8"]
        validate_qdq(onnx.load(str(bundle / int8.file)), stage)
        assert int8.calibration["method"] == "routing-aware"
        assert int8.calibration["extra_options"]["QuantizeBias"] is False
        precision = entry.precision
        assert precision.choice in ("int8", "fp16", "fp32") and precision.reason
        assert "int8_alone" in precision.evidence
        assert precision.calibration["set_sha256"] == int8.calibration["set_sha256"]


def test_int8_dynamic_quantizes_only_the_large_products(calibrated: tuple[Path, CalibrationResult],
                                                       recipe: CalibrationRecipe) -> None:
    bundle, result = calibrated
    for stage, entry in result.manifest.stages.items():
        variant = entry.variants["int8-dynamic"]
        graph = onnx.load(bundle / variant.file).graph
        large = large_products(onnx.load(bundle / entry.variants["fp32"].file).graph, recipe.dynamic_min_weight_kib)
        integer = [n for n in graph.node if n.op_type == "MatMulInteger"]
        assert variant.calibration["quantized"] == len(integer) == len(large), stage
        if not large:  # nothing worth quantizing: the fp32 graph as it was
            assert variant.sha256 == entry.variants["fp32"].sha256, stage
    quantized = {s for s, e in result.manifest.stages.items() if e.variants["int8-dynamic"].calibration["quantized"]}
    assert "encoder[camera]" in quantized and "expert[0]" in quantized and "gate" not in quantized
    validation = result.manifest.calibration.validation
    assert set(validation["int8_dynamic"]) == set(validation["fp32"])
    assert validation["int8_dynamic_cost"]["worst_drop_points"] < 5


def test_large_products_are_judged_by_their_weight_bytes(bundle_dir: Path) -> None:
    graph = onnx.load(bundle_dir / "stages/expert_0.onnx").graph
    weights = {i.name: int(np.prod(i.dims)) * 4 for i in graph.initializer}
    sizes = sorted(weights[n.input[1]] for n in graph.node if n.op_type in ("MatMul", "Gemm"))
    assert len(large_products(graph, 0)) == len(sizes)
    assert len(large_products(graph, sizes[-1] // 1024)) == sum(s >= sizes[-1] // 1024 * 1024 for s in sizes)
    assert large_products(graph, sizes[-1] // 1024 + 1) == []


def test_saved_sets_match_the_hashes_in_the_manifest(calibrated: tuple[Path, CalibrationResult]) -> None:
    bundle, result = calibrated
    summary = result.manifest.calibration
    sets = load_sets(bundle / summary.sets.file)
    assert summary.sets.sha256 == sha256_file(bundle / summary.sets.file)
    for stage, entry in result.manifest.stages.items():
        assert content_sha256(sets[stage]) == entry.variants["int8"].calibration["set_sha256"], stage


def test_each_expert_is_calibrated_only_on_tokens_the_gate_routes_to_it(
        calibrated: tuple[Path, CalibrationResult]) -> None:
    bundle, result = calibrated
    manifest = read_model_manifest(bundle)
    sets = load_sets(bundle / manifest.calibration.sets.file)
    variants = VariantEngines(bundle, manifest, 64)
    k = variants.layout.top_k
    for e in range(variants.layout.num_experts):
        tokens = sets[expert_stage(e)]["tokens"]
        assert len(tokens) >= 32
        scores = np.concatenate([run_engine(variants.engine("gate", "fp32"), {"tokens": tokens[lo:lo + 64]})["scores"]
                                 for lo in range(0, len(tokens), 64)])
        routed = (top_k_indices(scores, k) == e).any(axis=1)
        assert routed.all(), f"expert[{e}]: {int((~routed).sum())} calibration tokens were not routed to it"
    report = result.report
    assert report is not None and all(v >= 64 for v in report.routed_tokens.values())
    assert len(report.mask_counts) > 1  # sensors were dropped, not only the full mask


def test_fp16_variant_keeps_float32_io_and_sensitive_nodes(calibrated: tuple[Path, CalibrationResult]) -> None:
    bundle, _ = calibrated
    graph = onnx.load(str(bundle / "stages/head.fp16.onnx")).graph
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*graph.input, *graph.output])
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    norm = next(n for n in graph.node if n.op_type == "LayerNormalization")
    inits = {t.name: t for t in graph.initializer}
    assert all(inits[i].data_type == onnx.TensorProto.FLOAT for i in norm.input[1:] if i in inits)
    for path in (bundle / "stages").glob("*.fp16.onnx"):  # nothing kept float32 is rounded through float16
        nodes = onnx.load(str(path)).graph.node
        producer = {out: n for n in nodes for out in n.output}
        for node in nodes:
            src = producer.get(node.input[0]) if node.op_type == "Cast" else None
            assert not (src is not None and src.op_type == "Cast" and node.attribute[0].i == onnx.TensorProto.FLOAT
                        and src.attribute[0].i == onnx.TensorProto.FLOAT16), f"{path.name}: {src.name} -> {node.name}"


def test_every_variant_builds_and_runs_on_the_onnxruntime_backend(
        calibrated: tuple[Path, CalibrationResult], dataset_dir: Path, tmp_path: Path) -> None:
    bundle, result = calibrated
    split = load_dataset(dataset_dir, result.manifest.config, ("test",))["test"]
    answers = {}
    for precision in ("fp32", "int8", "fp16", "int8-dynamic", "auto"):
        target = load_target("cpu").model_copy(update={"precision": precision})
        manifest = build_engines(bundle, target, tmp_path / precision)
        if precision != "auto":
            assert {e.precision for e in manifest.engines.values()} == {precision}
        assert all(e.calibration for e in manifest.engines.values() if e.precision != "fp32")
        runtime = Runtime.load(tmp_path / precision)
        answers[precision] = probs = runtime.infer_batch(split.frames, 0b1111)
        runtime.close()
        assert probs.shape == (len(split), result.manifest.layout.num_classes)
        assert np.allclose(probs.sum(1), 1, atol=1e-3)
    np.testing.assert_allclose(answers["int8-dynamic"], answers["fp32"], atol=0.05)
    assert (answers["int8-dynamic"].argmax(1) == answers["fp32"].argmax(1)).mean() > 0.95


X86_FLAGS = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse4_2 avx avx2 fma\n"


def test_cpu_flags_tell_whether_int8_products_saturate(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(X86_FLAGS)
    flags = cpu_flags(cpuinfo)
    assert flags is not None and {"avx2", "sse4_2"} <= flags
    assert int8_products_saturate(flags) is True
    assert int8_products_saturate(flags | {"avx512_vnni"}) is False
    assert int8_products_saturate(flags | {"avx_vnni"}) is False
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")  # Arm: no x86 flags line
    assert cpu_flags(cpuinfo) is None and int8_products_saturate(None) is None
    assert cpu_flags(tmp_path / "absent") is None
    assert int8_products_saturate(frozenset({"sse4_2"})) is None


@pytest.mark.parametrize(("flags", "optimization", "saturate"), [
    ("avx2", "all", True), ("avx2 avx512_vnni", "all", False), ("avx2", "basic", None)])
def test_an_int8_cpu_build_records_and_warns_when_its_kernels_saturate(
        calibrated: tuple[Path, CalibrationResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        flags: str, optimization: str, saturate: bool | None) -> None:
    """ONNX Runtime fuses Q/DQ into integer kernels from 'extended' up; on AVX2 without VNNI their
    products saturate, and the build says so (the fact per engine, one line in the warnings)."""
    bundle, _ = calibrated
    monkeypatch.setattr(ort_backend, "cpu_flags", lambda: frozenset(flags.split()))
    target = load_target("cpu")
    options = target.onnxruntime.model_copy(update={"graph_optimization": optimization})
    manifest = build_engines(bundle, target.model_copy(update={"precision": "int8", "onnxruntime": options}),
                             tmp_path / "engines")
    assert {entry.fact("int8_products_saturate") for entry in manifest.engines.values()} == {saturate}
    warned = [line for line in stage_warnings(manifest) if "saturate" in line]
    assert len(warned) == (1 if saturate else 0)
    if saturate:
        assert f"{len(manifest.engines)} int8 engine(s)" in warned[0] and "graph_optimization: basic" in warned[0]


def test_fused_graphs_gain_validated_variants_and_a_measured_precision(
        checkpoint: Checkpoint, dataset_dir: Path, recipe: CalibrationRecipe, tmp_path: Path) -> None:
    """A fused graph is calibrated on its mask's frames (one per call), judged on its mask's
    validation samples, and built at the precision asked for. Its experts are routed here (the
    scatter-add stays float32 in fp16); dense fused graphs are calibrated in the fake-TensorRT
    tests' bundle."""
    bundle = tmp_path / "bundle"
    write_bundle(checkpoint, bundle, fuse_masks=(0b0101,), fused_experts="routed")
    entry = calibrate_bundle(bundle, dataset_dir, recipe).manifest.fused[0b0101]
    assert set(entry.variants) == {"fp32", "int8", "fp16", "int8-dynamic"}
    for variant in entry.variants.values():
        assert variant.file.startswith("fused/") and sha256_file(bundle / variant.file) == variant.sha256
    validate_qdq(onnx.load(bundle / entry.variants["int8"].file), entry.stage)
    evidence, budgets = entry.precision.evidence, recipe.budgets
    assert set(evidence["accuracy"]) == {"fp32", "int8", "fp16", "int8-dynamic"} and evidence["samples"] > 0
    drop = evidence["drop_points"]
    want = ("int8" if drop["int8"] <= budgets.int8_worst else "fp16" if drop["fp16"] <= budgets.fp16_worst
            else "fp32")
    assert entry.precision.choice == want, entry.precision
    split = load_dataset(dataset_dir, checkpoint.config, ("test",))["test"]
    frame = {n: (split.frames[n][0] if n in ("camera", "imu") else None) for n in checkpoint.config.sensor_names}
    answers = {}
    for precision in ("fp32", "int8", "fp16", "int8-dynamic"):
        target = load_target("cpu").model_copy(update={"precision": precision})
        built = build_engines(bundle, target, tmp_path / precision).fused[0b0101]
        assert built.precision == precision and built.source_sha256 == entry.variants[precision].sha256
        runtime = Runtime.load(tmp_path / precision)
        got = runtime.infer(frame)
        runtime.close()
        assert got.engines == ("fused[5]",)
        answers[precision] = got.probs
    np.testing.assert_allclose(answers["fp16"], answers["fp32"], atol=0.02)
    np.testing.assert_allclose(answers["int8"], answers["fp32"], atol=0.1)
    np.testing.assert_allclose(answers["int8-dynamic"], answers["fp32"], atol=0.05)
    tensorrt = load_target("cpu").model_copy(update={"backend": "tensorrt", "precision": "int8-dynamic"})
    with pytest.raises(BundleError, match="tensorrt backend does not build int8-dynamic"):
        build_engines(bundle, tensorrt, tmp_path / "trt", fuse=[])
    assert not (tmp_path / "trt").exists()


# -- the Q/DQ validator ------------------------------------------------------------------------
def _quantized_expert(bundle: Path, tmp_path: Path, **overrides: object) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    tokens = rng.standard_normal((64, 32)).astype(np.float32)
    options = {**EXTRA_OPTIONS, **overrides.pop("extra", {})}  # type: ignore[dict-item]
    args = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, extra_options=options)
    args.update(overrides)
    out = tmp_path / "q.onnx"
    quantize_static(str(bundle / "stages/expert_0.onnx"), str(out), StageSetReader({"tokens": tokens}), **args)
    return onnx.load(str(out))


def test_validator_accepts_the_configured_quantizer(bundle_dir: Path, tmp_path: Path) -> None:
    summary = validate_qdq(_quantized_expert(bundle_dir, tmp_path), "expert[0]")
    assert summary.per_channel_weights == 2


def test_validator_rejects_an_asymmetric_graph(bundle_dir: Path, tmp_path: Path) -> None:
    model = _quantized_expert(bundle_dir, tmp_path, extra={"ActivationSymmetric": False},
                              activation_type=QuantType.QUInt8)
    with pytest.raises(QDQError, match=r"(?s)stage 'expert\[0\]'.*UINT8.*not 0"):
        validate_qdq(model, "expert[0]")


def test_validator_rejects_a_nonzero_int8_zero_point(bundle_dir: Path, tmp_path: Path) -> None:
    model = _quantized_expert(bundle_dir, tmp_path)
    zp = next(t for t in model.graph.initializer if t.name.endswith("zero_point"))
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
    with pytest.raises(QDQError, match="asymmetric"):
        validate_qdq(model, "expert[0]")


def test_validator_rejects_quantized_bias_and_per_tensor_weights(bundle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(QDQError, match="int32 bias|pre-quantized"):
        validate_qdq(_quantized_expert(bundle_dir, tmp_path, extra={"QuantizeBias": True,
                                                                     "AddQDQPairToWeight": False}), "expert[0]")
    with pytest.raises(QDQError, match="per tensor"):
        validate_qdq(_quantized_expert(bundle_dir, tmp_path, per_channel=False), "expert[0]")


def test_validator_rejects_an_old_opset(bundle_dir: Path, tmp_path: Path) -> None:
    model = _quantized_expert(bundle_dir, tmp_path)
    next(o for o in model.opset_import if o.domain in ("", "ai.onnx")).version = 12
    with pytest.raises(QDQError, match="opset 12"):
        validate_qdq(model, "expert[0]")


# -- collection --------------------------------------------------------------------------------
def test_draw_masks_follows_the_missing_rates_and_never_empties() -> None:
    masks = draw_masks(np.random.default_rng(0), 20000, [0.5, 0.0, 0.9, 0.2])
    assert masks.min() > 0
    assert abs((masks & 1 == 0).mean() - 0.5) < 0.03
    assert (masks & 2).all()  # a sensor never missing is always present


def test_a_rare_expert_keeps_the_collection_drawing(bundle_dir: Path, dataset_dir: Path,
                                                    recipe: CalibrationRecipe) -> None:
    manifest = read_model_manifest(bundle_dir)
    variants = VariantEngines(bundle_dir, manifest, 64)
    train = load_dataset(dataset_dir, manifest.config, ("train",))["train"]
    first = recipe.with_overrides({"draw_frames": 64, "min_tokens_per_expert": 1, "samples_per_stage": 8})
    _, one = collect_routing_aware(variants, train, first)
    rarest = min(one.routed_tokens.values())
    wanted = recipe.with_overrides({"draw_frames": 64, "min_tokens_per_expert": rarest + 200,
                                    "samples_per_stage": 8})
    _, more = collect_routing_aware(variants, train, wanted)
    assert more.rounds > 1 and min(more.routed_tokens.values()) >= rarest + 200
    impossible = recipe.with_overrides({"draw_frames": 64, "max_frames": 64, "min_tokens_per_expert": 10**6})
    with pytest.raises(CalibrationError, match=r"(?s)stage .expert\[\d\]..*max_frames"):
        collect_routing_aware(variants, train, impossible)


# -- bad calibration sets: clear errors, nothing half-written ----------------------------------
def _good_sets(bundle: Path) -> dict[str, dict[str, np.ndarray]]:
    manifest = read_model_manifest(bundle)
    rng = np.random.default_rng(1)
    sizes = {"batch": 80, "tokens": 80}
    return {stage: {s.name: rng.standard_normal([d if isinstance(d, int) else sizes[d] for d in s.shape])
                    .astype(np.float32) for s in entry.inputs} for stage, entry in manifest.stages.items()}


@pytest.mark.parametrize("breakage, message", [
    (lambda s: s.update({"expert[1]": {}}), r"stage 'expert\[1\]': calibration set is empty"),
    (lambda s: s.update({"gate": {"tokens": s["gate"]["tokens"][:5]}}), r"stage 'gate'.*5 samples"),
    (lambda s: s.update({"head": {"pooled": s["head"]["pooled"][:, :7]}}), r"stage 'head' input 'pooled'.*shape"),
])
def test_bad_sets_name_the_stage_and_leave_the_bundle_untouched(bundle_dir: Path, dataset_dir: Path, tmp_path: Path,
                                                                recipe: CalibrationRecipe, breakage, message) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    before = {p.relative_to(bundle): sha256_file(p) for p in bundle.rglob("*") if p.is_file()}
    sets = _good_sets(bundle)
    breakage(sets)
    with pytest.raises(CalibrationError, match=message):
        calibrate_bundle(bundle, dataset_dir, recipe, sets)
    after = {p.relative_to(bundle): sha256_file(p) for p in bundle.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_cli_reports_a_bad_set_file_by_stage(bundle_dir: Path, dataset_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _copy(bundle_dir, tmp_path)
    sets = _good_sets(bundle)
    sets["encoder[imu]"]["frame"] = sets["encoder[imu]"]["frame"][:, :3]
    save_sets(sets, tmp_path / "bad.npz")
    manifest_before = (bundle / "manifest.json").read_text()
    assert main(["calibrate", str(bundle), "--data", str(dataset_dir), "--sets", str(tmp_path / "bad.npz")]) == 2
    assert "stage 'encoder[imu]' input 'frame'" in capsys.readouterr().err
    assert (bundle / "manifest.json").read_text() == manifest_before
    assert json.loads(manifest_before)["stages"]["gate"]["precision"]["choice"] == "fp32"


# -- the precision choice ----------------------------------------------------------------------
def _table(accuracies: dict[int, float]) -> EvalTable:
    return EvalTable("val", [MaskScore(m, [], 100, a, a, a) for m, a in accuracies.items()])


def test_precision_choice_follows_budgets_and_demotes_when_the_combination_is_over() -> None:
    # accuracy lost (fraction) per stage and precision; the combination costs the sum.
    loss = {("a", "int8"): 0.001, ("b", "int8"): 0.02, ("b", "fp16"): 0.0005,
            ("c", "int8"): 0.02, ("c", "fp16"): 0.01, ("d", "int8"): 0.0019, ("e", "int8"): 0.0019}

    def score(assignment: Mapping[str, str]) -> EvalTable:
        lost = sum(loss.get((s, p), 0.0) for s, p in assignment.items())
        return _table({1: 0.9 - lost, 2: 0.8 - lost / 2})

    budgets = Budgets(int8_stage_mean=0.2, int8_stage_worst=0.2, int8_mean=0.3, int8_worst=0.45, fp16_worst=0.1)
    auto = choose_precisions(["a", "b", "c", "d", "e"], score, budgets)
    assert auto.assignment["b"] == "fp16" and auto.assignment["c"] == "fp32"
    # a, d, e each fit alone (0.1 / 0.19 / 0.19 worst) but with b as fp16 all cost 0.53 > 0.45 worst:
    # the costliest (d, first of the tie) falls back to fp16 (which costs nothing here)
    assert auto.demoted == ["d"] and auto.assignment == {"a": "int8", "b": "fp16", "c": "fp32",
                                                         "d": "fp16", "e": "int8"}
    assert auto.final_cost.worst <= budgets.int8_worst
    assert "int8_alone" in auto.choices["c"].evidence and "fp16_alone" in auto.choices["c"].evidence


def test_mask_dependent_input_sizes_keep_the_most_frequent_shape() -> None:
    """An imputer's context grows with the present sensors; a set keeps one shape per input."""
    from edgemoe.calibrate.collect import _subsample

    records = [{"context": np.ones((2, 8, 4), np.float32)}, {"context": np.ones((3, 12, 4), np.float32)},
               {"context": np.ones((1, 12, 4), np.float32)}, {}]
    kept = _subsample(records, limit=100, rng=np.random.default_rng(0))
    assert kept["context"].shape == (4, 12, 4)


@pytest.mark.parametrize("model_update", [{"fusion": "attention"}, {"method": "confsmoe"}], ids=["fusion", "confsmoe"])
def test_a_fusion_or_slots_model_calibrates_and_builds_in_every_precision(
        tiny_config: ModelConfig, dataset_dir: Path, recipe: CalibrationRecipe, tmp_path: Path,
        model_update: dict[str, str]) -> None:
    """The fusion stage's ``token_sensors`` input is per sample, so the sets of several masks
    stack; its graph survives the FP16 conversion. Conf-SMoE's imputers run after the experts and
    are calibrated on the expert outputs they read there; its head reads one slot per sensor.
    INT8 and FP16, run as simulated quantization, answer like FP32 (within a top-k flip)."""
    cfg = tiny_config.model_copy(update={"model": tiny_config.model.model_copy(update=model_update)})
    torch.manual_seed(0)
    save_checkpoint(build_model(cfg).eval(), tmp_path / "model.safetensors", {"best_epoch": 0})
    write_bundle(load_checkpoint(tmp_path / "model.safetensors"), tmp_path / "bundle")
    result = calibrate_bundle(tmp_path / "bundle", dataset_dir, recipe)
    sets = load_sets(tmp_path / "bundle" / result.manifest.calibration.sets.file)
    if "fusion" in sets:
        assert sets["fusion"]["token_sensors"].shape[:2] == sets["fusion"]["tokens"].shape[:2]
    else:
        assert result.manifest.layout.imputes_after_experts
        assert sets["head"]["pooled"].shape[1] == cfg.num_sensors * cfg.model.dim
        assert all(sets[f"imputer[{name}]"]["context"].shape[0] > 0 for name in cfg.sensor_names)
    split = load_dataset(dataset_dir, cfg, ("test",))["test"]
    probs = {}
    for precision in ("fp32", "int8", "fp16"):
        # calibration's own target: the graphs run as the arithmetic they state (optimisations off),
        # as TensorRT runs them. ONNX Runtime's fused integer kernels round differently per CPU
        # (without VNNI their u8 x s8 products saturate), so a bar on them would judge the machine.
        build_engines(tmp_path / "bundle", SIMULATED.model_copy(update={"precision": precision}), tmp_path / precision)
        runtime = Runtime.load(tmp_path / precision)
        probs[precision] = {mask: runtime.infer_batch({n: split.frames[n] for i, n in enumerate(cfg.sensor_names)
                                                       if mask >> i & 1}, mask) for mask in (0b1111, 0b0110)}
        runtime.close()
    for precision in ("int8", "fp16"):
        for mask, p in probs[precision].items():
            # per sample; a token whose top-k flips under INT8 moves its sample further (measured:
            # p99 0.010-0.017, max 0.013 with fusion, 0.12 for one slots-readout sample)
            error = np.abs(p - probs["fp32"][mask]).max(axis=1)
            assert np.quantile(error, 0.99) < 0.05 and error.max() < 0.25, (precision, mask)
