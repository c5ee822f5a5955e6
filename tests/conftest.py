"""Shared fixtures: one tiny dataset, one briefly trained model, its bundle and CPU engines.

Built once per test session in a temp directory (a few tens of seconds on 2 cores) and reused by
every test that needs a real trained pipeline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgemoe.core.schema import ModelConfig, load_config
from edgemoe.data.dataset import Split, load_dataset
from edgemoe.data.synthetic import write_synthetic
from edgemoe.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from edgemoe.train.trainer import Trainer

TINY_EPOCHS = 4


@pytest.fixture(scope="session")
def config() -> ModelConfig:
    return load_config(None)


@pytest.fixture(scope="session")
def tiny_config(config: ModelConfig) -> ModelConfig:
    # every mask equally often: the tiny model is checked on every mask after a few epochs
    training = config.training.model_copy(update={"epochs": TINY_EPOCHS, "mask_sampling": "uniform"})
    return config.model_copy(update={"training": training})


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory, config: ModelConfig) -> Path:
    out = tmp_path_factory.mktemp("data")
    write_synthetic(config, out, seed=0, scale=0.25)
    return out


@pytest.fixture(scope="session")
def dataset(dataset_dir: Path, config: ModelConfig) -> dict[str, Split]:
    return load_dataset(dataset_dir, config)


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory, tiny_config: ModelConfig,
                    dataset: dict[str, Split]) -> Path:
    result = Trainer(tiny_config, progress=False, log=lambda line: None).fit(dataset["train"], dataset["val"])
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(result.model, path, {"best_epoch": result.best_epoch, "val_table": result.val_table.to_dict()})
    return path


@pytest.fixture(scope="session")
def checkpoint(checkpoint_path: Path) -> Checkpoint:
    return load_checkpoint(checkpoint_path)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, checkpoint: Checkpoint) -> Path:
    from edgemoe.export.bundle import write_bundle

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    write_bundle(checkpoint, out)
    return out


@pytest.fixture(scope="session")
def engines_dir(tmp_path_factory: pytest.TempPathFactory, bundle_dir: Path) -> Path:
    from edgemoe.engines.build import build_engines
    from edgemoe.engines.target import load_target

    out = tmp_path_factory.mktemp("engines") / "cpu"
    build_engines(bundle_dir, load_target("cpu"), out)
    return out
