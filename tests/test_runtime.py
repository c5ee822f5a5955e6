"""The per-mask runtime: only the needed engines run; bad frames are named; nothing is made up."""

import threading
from pathlib import Path

import numpy as np
import pytest

from edgemoe.core.errors import FrameError
from edgemoe.core.mask import all_masks, is_present
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split
from edgemoe.engines.onnxruntime.lanes import Job, Lanes
from edgemoe.engines.target import OrtOptions
from edgemoe.runtime.runtime import ABSENT, NO_SENSOR, NON_FINITE, Runtime


@pytest.fixture(scope="module")
def runtime(engines_dir: Path) -> Runtime:
    return Runtime.load(engines_dir)


@pytest.fixture()
def frame(dataset: dict[str, Split]) -> dict[str, np.ndarray]:
    return {k: v[0].copy() for k, v in dataset["test"].frames.items()}


def test_full_frame_runs_every_encoder(runtime: Runtime, frame: dict[str, np.ndarray]) -> None:
    pred = runtime.infer(frame)
    assert pred.mask == 0b1111 and pred.sensors == ("camera", "scan", "imu", "odom")
    assert pred.probs is not None and pred.probs.shape == (8,)
    assert pred.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert pred.label == int(pred.probs.argmax())
    assert [e for e in pred.engines if e.startswith("encoder")] == [
        "encoder[camera]", "encoder[scan]", "encoder[imu]", "encoder[odom]"]
    assert pred.engines[-1] == "head" and "gate" in pred.engines


def test_missing_sensors_skip_their_encoders(runtime: Runtime, frame: dict[str, np.ndarray]) -> None:
    frame["scan"] = None  # type: ignore[assignment]
    del frame["odom"]
    pred = runtime.infer(frame)
    assert pred.mask == 0b0101 and pred.sensors == ("camera", "imu")
    assert pred.missing == {"scan": ABSENT, "odom": ABSENT}
    assert "encoder[scan]" not in pred.engines and "encoder[odom]" not in pred.engines
    assert pred.expected_accuracy == pytest.approx(runtime.bundle.expected_accuracy(0b0101))


def test_only_routed_experts_run(runtime: Runtime, frame: dict[str, np.ndarray]) -> None:
    only_odom = {"odom": frame["odom"]}
    pred = runtime.infer(only_odom)
    experts = [e for e in pred.engines if e.startswith("expert")]
    # one sensor = 4 tokens, top-2 each: between 2 and 4 distinct experts, never more than routed
    result = runtime.executor.run(pred.mask, {3: frame["odom"][None]})
    routed = [f"expert[{e}]" for e in np.flatnonzero(result.expert_tokens)]
    assert sorted(experts) == sorted(routed)


def test_nan_frame_counts_as_missing_and_is_reported(runtime: Runtime, frame: dict[str, np.ndarray]) -> None:
    frame["imu"][2, 5] = np.nan
    pred = runtime.infer(frame)
    assert pred.missing == {"imu": NON_FINITE}
    assert pred.mask == 0b1011 and "encoder[imu]" not in pred.engines


def test_wrong_shape_or_dtype_names_the_sensor(runtime: Runtime, frame: dict[str, np.ndarray]) -> None:
    bad = dict(frame, camera=frame["camera"][:, :8])
    with pytest.raises(FrameError, match=r"sensor 'camera': expected shape \[1, 16, 16\] dtype float32, found shape \[1, 8, 16\]"):
        runtime.infer(bad)
    with pytest.raises(FrameError, match=r"sensor 'odom'.*dtype float64"):
        runtime.infer(dict(frame, odom=frame["odom"].astype(np.float64)))
    with pytest.raises(FrameError, match=r"unknown sensor\(s\) \['lidar'\]"):
        runtime.infer(dict(frame, lidar=frame["odom"]))


def test_no_sensor_gives_no_prediction_with_a_reason(runtime: Runtime, frame: dict[str, np.ndarray]) -> None:
    frame["camera"][:] = np.inf
    pred = runtime.infer({"camera": frame["camera"], "scan": None})
    assert pred.probs is None and pred.label is None and pred.engines == ()
    assert pred.reason == NO_SENSOR and pred.missing["camera"] == NON_FINITE


def test_runtime_accuracy_follows_the_mask_structure(runtime: Runtime, dataset: dict[str, Split],
                                                     config: ModelConfig) -> None:
    test = dataset["test"]
    acc = {m: float((runtime.infer_batch(test.frames, m).argmax(1) == test.label).mean()) for m in (1, 15)}
    assert acc[15] > acc[1] > 1 / config.num_classes


def test_the_trusted_door_gives_the_checked_doors_answer_on_every_mask(runtime: Runtime,
                                                                         frame: dict[str, np.ndarray]) -> None:
    names = runtime.sensor_names
    every = {i: frame[n][None] for i, n in enumerate(names)}  # frames of absent sensors are not read
    for mask in all_masks(len(names)):
        checked = runtime.infer({n: (frame[n] if is_present(mask, i) else None) for i, n in enumerate(names)})
        trusted = runtime.run(mask, every)
        assert trusted.mask == checked.mask == mask and trusted.engines == checked.engines
        np.testing.assert_allclose(trusted.probs, checked.probs, atol=1e-6)
        assert trusted.missing == checked.missing and trusted.sensors == checked.sensors
    nothing = runtime.run(0, {})
    assert nothing.label is None and nothing.reason == NO_SENSOR
    assert nothing.missing == {n: ABSENT for n in names}


@pytest.fixture(scope="module")
def two_thread_runtime(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> Runtime:
    from edgemoe.engines.build import build_engines
    from edgemoe.engines.target import load_target

    target = load_target("cpu").model_copy(update={"onnxruntime": OrtOptions(threads=2)})
    out = tmp_path_factory.mktemp("engines2") / "cpu2"
    build_engines(bundle_dir, target, out)
    return Runtime.load(out)


def test_a_thread_budget_of_two_gives_the_sequential_answer_on_every_mask(
        runtime: Runtime, two_thread_runtime: Runtime, dataset: dict[str, Split]) -> None:
    """Each session keeps one intra-op thread, so running stages at once changes no arithmetic:
    the probabilities are bit-identical, at batch 1 and at the largest batch."""
    names = runtime.sensor_names
    frames = dataset["test"].frames
    for batch in (1, runtime.bundle.max_batch):
        every = {i: np.ascontiguousarray(frames[n][:batch]) for i, n in enumerate(names)}
        for mask in all_masks(len(names)):
            one, two = runtime.run(mask, every), two_thread_runtime.run(mask, every)
            assert one.engines == two.engines
            np.testing.assert_array_equal(one.probs, two.probs)


def test_stage_intra_op_threads_match_stage_names_first_pattern_wins() -> None:
    options = OrtOptions(stage_intra_op_threads={"encoder[[]camera]": 2, "encoder*": 3})
    assert options.for_stage("encoder[camera]").intra_op_threads == 2
    assert options.for_stage("encoder[scan]").intra_op_threads == 3
    assert options.for_stage("gate").intra_op_threads == 1
    with pytest.raises(ValueError, match="stage_intra_op_threads"):
        OrtOptions(stage_intra_op_threads={"encoder*": 0})


def test_a_stage_given_two_intra_op_threads_gets_them_and_answers_alike(
        tmp_path: Path, bundle_dir: Path, runtime: Runtime, dataset: dict[str, Split]) -> None:
    """The option reaches the real ONNX Runtime session of the matching stage only, through the
    target recorded in the engine manifest, and changes no answer beyond float reassociation."""
    from edgemoe.engines.build import build_engines
    from edgemoe.engines.target import load_target

    camera = f"encoder[{runtime.sensor_names[0]}]"
    target = load_target("cpu").model_copy(
        update={"onnxruntime": OrtOptions(stage_intra_op_threads={camera.replace("[", "[[]", 1): 2})})
    build_engines(bundle_dir, target, tmp_path / "engines", fuse=[])
    loaded = Runtime.load(tmp_path / "engines")
    threads = {stage: engine.session.get_session_options().intra_op_num_threads
               for stage, engine in loaded.bundle.engines.items()}
    assert threads[camera] == 2 and {t for s, t in threads.items() if s != camera} == {1}
    frames = {i: np.ascontiguousarray(dataset["test"].frames[n][:1]) for i, n in enumerate(runtime.sensor_names)}
    for mask in all_masks(len(runtime.sensor_names)):
        np.testing.assert_allclose(loaded.run(mask, frames).probs, runtime.run(mask, frames).probs, atol=1e-5)


def test_lanes_run_launched_jobs_at_once_and_hand_back_errors() -> None:
    """Two jobs that each wait for the other can only finish if they run at the same time."""
    lanes = Lanes(2)
    first, second = threading.Event(), threading.Event()
    a, b = Job(), Job()

    def run_a() -> None:
        first.set()
        assert second.wait(5), "the second job never ran alongside the first"

    def run_b() -> None:
        second.set()
        assert first.wait(5), "the first job never ran alongside the second"

    lanes.launch(a, run_a)
    lanes.launch(b, run_b)
    lanes.wait(a)
    lanes.wait(b)
    broken = Job()
    lanes.launch(broken, lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        lanes.wait(broken)
    lanes.wait(broken)  # the error is handed back once
