"""The per-mask runtime: only the needed engines run; bad frames are named; nothing is made up."""

from pathlib import Path

import numpy as np
import pytest

from edgemoe.core.errors import FrameError
from edgemoe.core.mask import all_masks, is_present
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split
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
