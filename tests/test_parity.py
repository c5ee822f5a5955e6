"""Three paths, one plan: PyTorch forward == plan over PyTorch stages == plan over ONNX Runtime
engines, for every mask of the default model, with the same top-k choices."""

from pathlib import Path

import numpy as np
import pytest
import torch

from edgemoe.core.mask import all_masks, masks_to_bits
from edgemoe.core.plan import build_plan
from edgemoe.data.dataset import Split
from edgemoe.export.torch_engine import torch_engines
from edgemoe.runtime.executor import PlanExecutor
from edgemoe.runtime.runtime import Runtime
from edgemoe.train.checkpoint import Checkpoint
from edgemoe.train.trainer import to_tensors
from tests.routing import assert_same_routing

ATOL = 1e-5  # float32 probabilities; observed max difference is ~4e-7
BATCH = 8


@pytest.fixture(scope="module")
def runtime(engines_dir: Path) -> Runtime:
    return Runtime.load(engines_dir)


@pytest.mark.parametrize("mask", all_masks(4))
def test_three_paths_agree_on_every_mask(mask: int, checkpoint: Checkpoint, dataset: dict[str, Split],
                                         runtime: Runtime) -> None:
    model, names = checkpoint.model, checkpoint.config.sensor_names
    frames = {k: v[:BATCH] for k, v in dataset["test"].frames.items()}
    present = torch.from_numpy(masks_to_bits(np.full(BATCH, mask), len(names)))
    with torch.no_grad():
        out = model(to_tensors(frames), present)
    reference = torch.softmax(out.logits, -1).numpy()
    chosen = out.chosen[out.token_mask].numpy()
    expected_counts = np.bincount(chosen.ravel(), minlength=model.config.model.num_experts)

    plan = build_plan(model.layout(), mask)
    stage_frames = {i: frames[names[i]] for i in plan.present}
    over_torch = PlanExecutor(model.layout(), torch_engines(model, BATCH), BATCH).run(mask, stage_frames)
    over_engines = runtime.executor.run(mask, stage_frames)

    np.testing.assert_allclose(over_torch.probs, reference, atol=ATOL)
    np.testing.assert_allclose(over_engines.probs, reference, atol=ATOL)
    assert_same_routing(over_torch.expert_tokens, expected_counts, msg=f"mask {mask}, torch stages")
    assert_same_routing(over_engines.expert_tokens, expected_counts, msg=f"mask {mask}, engines")


def test_batched_runtime_matches_single_frames(runtime: Runtime, dataset: dict[str, Split]) -> None:
    frames = {k: v[:5] for k, v in dataset["test"].frames.items()}
    batched = runtime.infer_batch(frames, 0b1111)
    for i in range(5):
        single = runtime.infer({k: v[i] for k, v in frames.items()})
        assert single.probs is not None
        np.testing.assert_allclose(single.probs, batched[i], atol=1e-6)
