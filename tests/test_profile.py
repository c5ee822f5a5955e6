"""The profiler and the hot path: parity of the optimised executor, nothing built after start,
reports, compare, the device script without torch, and the Jetson tools being read when present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from edgemoe.core.engine import TensorSpec
from edgemoe.core.mask import all_masks, is_present, masks_to_bits
from edgemoe.core.stages import StageLayout
from edgemoe.profile.environment import Tegrastats, describe
from edgemoe.profile.measure import ProfileSettings, profile_engines
from edgemoe.profile.report import compare, load_runs, write_reports
from edgemoe.runtime.executor import PlanExecutor
from edgemoe.runtime.runtime import Runtime
from tests.polling import HANG_S, wait_for
from tests.routing import assert_same_routing

ROOT = Path(__file__).resolve().parents[1]


def random_frames(runtime: Runtime, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal((n, *s.shape)).astype(np.float32) for s in runtime.config.sensors}


def test_runtime_matches_the_model_on_every_mask_batch_1_and_batched(engines_dir: Path, checkpoint) -> None:
    runtime = Runtime.load(engines_dir)
    model = checkpoint.model.eval()
    frames = random_frames(runtime, 6)
    names = runtime.sensor_names
    for mask in all_masks(len(names)):
        present = torch.from_numpy(masks_to_bits(np.full(6, mask), len(names)))
        with torch.no_grad():
            out = model({k: torch.from_numpy(v) for k, v in frames.items()}, present)
        want = torch.softmax(out.logits, -1).numpy()
        got = runtime.infer_batch(frames, mask)
        assert np.abs(got - want).max() < 1e-5, mask
        for i in range(2):
            one = runtime.infer({n: (frames[n][i] if mask >> b & 1 else None) for b, n in enumerate(names)})
            assert np.abs(one.probs - want[i]).max() < 1e-5, mask
        # the same experts chose the same tokens: per-expert counts over the tokens that count
        result = runtime.executor.run(mask, {i: frames[names[i]][:1] for i in range(len(names)) if is_present(mask, i)})
        chosen = out.chosen[0][out.token_mask[0]].reshape(-1).numpy()
        assert_same_routing(result.expert_tokens, np.bincount(chosen, minlength=len(result.expert_tokens)),
                            msg=f"mask {mask}")


class LinearEngine:
    """A numpy stage ``y = x @ W`` (+ optional confidence column) behind the engine protocol."""

    def __init__(self, name: str, inp: TensorSpec, outs: Sequence[TensorSpec], weights: Sequence[np.ndarray],
                 max_dims: Mapping[str, int]) -> None:
        self.name, self.inputs, self.outputs = name, (inp,), tuple(outs)
        self.weights = weights
        self.buffer = np.zeros(inp.max_shape(max_dims), np.float32)
        self.shape: tuple[int, ...] = ()
        self.out: dict[str, np.ndarray] = {}

    def input(self, name: str, shape: Sequence[int]) -> np.ndarray:
        self.shape = tuple(shape)
        return self.buffer.reshape(-1)[: int(np.prod(shape))].reshape(shape)

    def launch(self) -> None:
        x = self.input("x", self.shape)
        flat = x.reshape(x.shape[0], -1) if self.name.startswith(("encoder", "imputer")) else x
        self.out = {}
        for spec, w in zip(self.outputs, self.weights):
            y = flat @ w[: flat.shape[1]]  # an imputer's context shrinks as sensors go missing
            self.out[spec.name] = y.reshape(x.shape[0], *[d for d in spec.shape[1:]]) if spec.name == "tokens" else y

    def wait(self) -> Mapping[str, np.ndarray]:
        return self.out

    def warmup(self) -> None:
        pass

    def close(self) -> None:
        pass


def numpy_model(layout: StageLayout, shapes: dict[str, tuple[int, ...]], seed: int = 0):
    """Random linear stages for a layout, and a plain per-token reference forward over them."""
    rng = np.random.default_rng(seed)
    s, d, n = layout.tokens_per_sensor, layout.dim, layout.num_experts
    max_dims = layout.max_dims(4)
    w = lambda *shape: (rng.standard_normal(shape) * 0.3).astype(np.float32)  # noqa: E731
    engines = {}
    for sensor in layout.sensors:
        size = int(np.prod(shapes[sensor]))
        engines[f"encoder[{sensor}]"] = LinearEngine(
            f"encoder[{sensor}]", TensorSpec("frame", ("batch", *shapes[sensor])),
            [TensorSpec("tokens", ("batch", s, d))], [w(size, s * d)], max_dims)
        if layout.filler == "imputer":
            ctx = (layout.num_sensors - 1) * s * d
            engines[f"imputer[{sensor}]"] = LinearEngine(
                f"imputer[{sensor}]", TensorSpec("context", ("batch", "ctx", d)),
                [TensorSpec("tokens", ("batch", s, d))], [w(ctx, s * d)], {**max_dims, "ctx": layout.num_sensors * s})
    token = TensorSpec("tokens", ("tokens", d))
    engines["gate"] = LinearEngine("gate", token, [TensorSpec("scores", ("tokens", n))], [w(d, n)], max_dims)
    for e in range(n):
        outs = [TensorSpec("delta", ("tokens", d))]
        weights = [w(d, d)]
        if layout.mixing == "confidence":
            outs.append(TensorSpec("confidence", ("tokens", 1)))
            weights.append(w(d, 1))
        engines[f"expert[{e}]"] = LinearEngine(f"expert[{e}]", token, outs, weights, max_dims)
    engines["head"] = LinearEngine("head", TensorSpec("pooled", ("batch", d)),
                                   [TensorSpec("probs", ("batch", layout.num_classes))], [w(d, layout.num_classes)], max_dims)
    constants = {sensor: w(s, d) for sensor in layout.sensors}
    return engines, constants


def reference(layout: StageLayout, engines, constants, mask: int, frames: dict[int, np.ndarray]) -> np.ndarray:
    """The forward written out per sample and per token, with no buffers or grouping."""
    s = layout.tokens_per_sensor
    batch = next(iter(frames.values())).shape[0]
    lin = lambda name, x, i=0: x @ engines[name].weights[i]  # noqa: E731
    out = []
    for b in range(batch):
        per_sensor = {}
        for i, sensor in enumerate(layout.sensors):
            if mask >> i & 1:
                per_sensor[i] = lin(f"encoder[{sensor}]", frames[i][b].reshape(-1)).reshape(s, -1)
        present = sorted(per_sensor)
        if layout.filler == "constant":
            per_sensor.update({i: constants[x] for i, x in enumerate(layout.sensors) if i not in per_sensor})
        elif layout.filler == "imputer":
            ctx = np.concatenate([per_sensor[i] for i in present]).reshape(-1)
            for i, x in enumerate(layout.sensors):
                if i not in present:
                    sub = engines[f"imputer[{x}]"].weights[0][: ctx.size]
                    per_sensor[i] = (ctx @ sub).reshape(s, -1)
        tokens = np.concatenate([per_sensor[i] for i in sorted(per_sensor)])
        pooled = np.zeros(tokens.shape[1])
        for t in tokens:
            scores = lin("gate", t)
            top = np.argsort(-scores, kind="stable")[: layout.top_k]
            soft = np.exp(scores[top] - scores[top].max())
            soft /= soft.sum()
            mixed = t.copy()
            for j, e in enumerate(top):
                weight = lin(f"expert[{e}]", t, 1)[0] if layout.mixing == "confidence" else soft[j]
                mixed += weight * lin(f"expert[{e}]", t)
            pooled += mixed / len(tokens)
        out.append(lin("head", pooled))
    return np.stack(out)


@pytest.mark.parametrize("filler,mixing", [("drop", "softmax"), ("constant", "softmax"), ("imputer", "confidence")])
def test_executor_matches_a_per_token_reference(filler: str, mixing: str) -> None:
    layout = StageLayout(sensors=("a", "b", "c"), tokens_per_sensor=2, dim=5, num_experts=4, top_k=2,
                         num_classes=3, filler=filler, mixing=mixing)  # type: ignore[arg-type]
    shapes = {"a": (2, 3), "b": (4,), "c": (1, 2, 2)}
    engines, constants = numpy_model(layout, shapes)
    executor = PlanExecutor(layout, engines, max_batch=4, constants=constants)
    rng = np.random.default_rng(1)
    for mask in all_masks(3):
        for batch in (1, 3):
            frames = {i: rng.standard_normal((batch, *shapes[x])).astype(np.float32)
                      for i, x in enumerate(layout.sensors) if mask >> i & 1}
            got = executor.run(mask, frames).probs
            want = reference(layout, engines, constants, mask, frames)
            assert np.allclose(got, want, atol=1e-4), (filler, mixing, mask, batch)


def test_nothing_is_built_after_load_whatever_the_mask_sequence(engines_dir: Path) -> None:
    runtime = Runtime.load(engines_dir)
    engines = runtime.bundle.engines.values()
    bindings = sum(e.bound_shapes for e in engines)
    programs = dict(runtime.executor.programs)
    assert programs.keys() == set(all_masks(len(runtime.sensor_names)))
    rng = np.random.default_rng(3)
    frames = random_frames(runtime, 8, seed=3)
    for i in range(120):
        mask = int(rng.integers(1, 16))
        runtime.infer({n: (frames[n][i % 8] if mask >> b & 1 else None) for b, n in enumerate(runtime.sensor_names)})
        runtime.infer_batch({n: frames[n][: 1 + i % 8] for n in runtime.sensor_names}, mask)
    assert sum(e.bound_shapes for e in engines) == bindings
    assert runtime.executor.programs.keys() == programs.keys()
    assert all(runtime.executor.programs[m] is p for m, p in programs.items())  # none rebuilt


def test_profile_writes_json_markdown_plots_and_compares(engines_dir: Path, tmp_path: Path) -> None:
    settings = ProfileSettings(masks=(15, 1, 7), frames=6, rounds=2, warmup_frames=2, switch_frames=16,
                               throughput_batches=2, rate_hz=200, rate_frames=5)
    run = profile_engines(engines_dir, settings)
    files = write_reports([run], tmp_path)
    assert {f.suffix for f in files} == {".json", ".md", ".png"}
    assert (tmp_path / "profile.md").read_text().count("| camera+scan+imu+odom |") >= 2
    (loaded,) = load_runs(tmp_path)
    assert set(loaded["masks"]) == {"15", "1", "7"}
    full = loaded["masks"]["15"]
    assert set(full["stages"]) >= {"encoder[camera]", "encoder[odom]", "gate", "head"}
    assert "encoder[scan]" not in loaded["masks"]["1"]["stages"]
    assert 0 < full["stage_sum"]["p50"] < full["instrumented_e2e"]["p50"]
    assert 0 <= full["dispatch_fraction_p50"] < 1
    assert loaded["compiled_after_start"] == {"programs": 0, "bindings": 0}
    assert loaded["switch"]["patterns"]["full<->7"]["switches"] >= 2
    jitter = loaded["switch"]["all"]["steady_ratio_to_steady_p50"]  # the reference a switch is read against
    assert 0 < jitter["p50"] <= jitter["p99"] and "steady ratio p99" in (tmp_path / "profile.md").read_text()
    assert loaded["cold_start"]["load_s"] > 0 and loaded["memory"]["rss_after_load_mib"] > 0
    assert "skipped" in loaded["environment"]["jetson"]["nvpmodel"]
    at_rate = loaded["at_rate"]  # the mask with the most sensors, back to back and at the sensor rate
    assert at_rate["label"] == "camera+scan+imu+odom" and at_rate["hz"] == 200
    assert at_rate["tight"]["n"] == 25 and at_rate["at_rate"]["n"] == at_rate["prewarmed"]["n"] == 5
    assert "## At the sensor rate (camera+scan+imu+odom)" in (tmp_path / "profile.md").read_text()
    table = compare(loaded, loaded)
    assert "| camera+scan+imu+odom |" in table and " 1.00 |" in table


def test_device_script_profiles_and_compares_without_torch(engines_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is not installed on this device')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    out = tmp_path / "prof"
    cmd = [sys.executable, str(ROOT / "scripts/profile_latency.py"), str(engines_dir), "--out", str(out),
           "--mask", "camera+imu", "--frames", "4", "--rounds", "1", "--switch-frames", "8", "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "profile.json").read_text())["runs"][0]["masks"]["5"]["label"] == "camera+imu"
    done = subprocess.run([sys.executable, str(ROOT / "scripts/profile_latency.py"), "compare", str(out), str(out)],
                          env=env, capture_output=True, text=True, timeout=HANG_S)
    assert done.returncode == 0 and "| camera+imu |" in done.stdout, done.stderr


def test_jetson_tools_are_recorded_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = {"nvpmodel": "NV Power Mode: 15W\n0", "jetson_clocks": "SOC family:tegra234 ... clocks pinned",
             "tegrastats": None}
    for name, text in tools.items():
        script = tmp_path / name
        body = ('while true; do echo "RAM 2048/7620MB VDD_IN 4200mW/4200mW"; sleep 0.05; done'
                if text is None else f"echo '{text}'")
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    env = describe()
    assert "15W" in env["jetson"]["nvpmodel"]["output"]
    assert "pinned" in env["jetson"]["jetson_clocks"]["output"]
    with Tegrastats(interval_ms=50) as sampler:
        wait_for(lambda: bool(sampler.samples), what="a tegrastats sample")
    assert sampler.to_dict()["samples"] and "RAM" in sampler.to_dict()["samples"][0]


def test_non_finite_frames_still_count_as_missing_after_the_fast_check(engines_dir: Path) -> None:
    runtime = Runtime.load(engines_dir)
    frames = {n: v[0] for n, v in random_frames(runtime, 1).items()}
    for bad in (np.nan, np.inf, -np.inf):
        imu = frames["imu"].copy()
        imu[1, 2] = bad
        pred = runtime.infer({**frames, "imu": imu})
        assert pred.missing == {"imu": "nan/inf"} and "encoder[imu]" not in pred.engines
    huge = np.full_like(frames["scan"], 3.0e38)  # finite, and its float32 sum would overflow
    assert runtime.infer({**frames, "scan": huge}).missing == {}
