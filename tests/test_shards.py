"""The sharded format: what is packed reads back; bad shards get the .npz format's one-line errors;
the epoch plan gives every rank its own samples and one process the same steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgemoe.cli import main
from edgemoe.core.errors import BundleError, DatasetError
from edgemoe.core.schema import ModelConfig
from edgemoe.data.dataset import Split, load_dataset, save_split
from edgemoe.data.loader import BatchLoader, plan_epoch
from edgemoe.data.shards import INDEX, OPEN_SHARDS, ShardWriter, open_sharded, pack_npz
from edgemoe.data.synthetic import generate_split
from edgemoe.train.masks import sample_masks

SHARD = 50


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory: pytest.TempPathFactory, dataset_dir: Path, config: ModelConfig) -> Path:
    out = tmp_path_factory.mktemp("shards") / "data"
    pack_npz(dataset_dir, out, config, SHARD)
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_packed_dataset_reads_back_sample_for_sample(sharded_dir: Path, dataset_dir: Path, config: ModelConfig) -> None:
    npz = load_dataset(dataset_dir, config)
    shards = open_sharded(sharded_dir, config)
    for name, split in npz.items():
        assert len(shards[name]) == len(split)
        assert shards[name].shard_sizes == (SHARD,) * (len(split) // SHARD) + ((len(split) % SHARD,) if len(split) % SHARD else ())
        index = np.random.default_rng(0).permutation(len(split))[:77]
        batch = shards[name].read(index)
        for sensor in config.sensor_names:
            np.testing.assert_array_equal(batch.frames[sensor], split.frames[sensor][index])
        np.testing.assert_array_equal(batch.label, split.label[index])
    index = json.loads((sharded_dir / INDEX).read_text())
    files = index["splits"]["train"]["shards"][0]["files"]
    assert set(files) == {"camera.npy", "scan.npy", "imu.npy", "odom.npy", "label.npy", "mask.npy"}
    assert all(len(f["sha256"]) == 64 for f in files.values())


def test_masks_round_trip_and_unrecorded_cells_read_as_zero(tmp_path: Path, config: ModelConfig) -> None:
    split = generate_split(config, 40, seed=3)
    split.frames["odom"][5] = np.nan
    masks = np.full(40, 15)
    masks[5] = 0b0111
    with ShardWriter(tmp_path / "d", config, shard_size=16) as writer:
        writer.add("train", Split(split.frames, split.label, masks))
    opened = open_sharded(tmp_path / "d", config, ("train",))["train"]
    assert opened.recorded(4).tolist() == masks.tolist()
    assert np.all(opened.read(np.array([5])).frames["odom"] == 0)


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, config: ModelConfig) -> None:
    split = generate_split(config, 20, seed=1)
    bad = Split(dict(split.frames, imu=split.frames["imu"].astype(np.float64)), split.label, None)
    with pytest.raises(DatasetError, match=r"chunk 2 \(split 'train'\): sensor 'imu' expected shape \[20, 6, 32\] dtype float32"):
        with ShardWriter(tmp_path / "d", config, shard_size=8) as writer:
            writer.add("train", split)
            writer.add("train", bad)
    assert list(tmp_path.iterdir()) == []


def test_a_sample_without_any_recorded_sensor_is_refused(tmp_path: Path, config: ModelConfig) -> None:
    split = generate_split(config, 8, seed=1)
    masks = np.full(8, 15)
    masks[6] = 0
    with pytest.raises(DatasetError, match=r"chunk 1 \(split 'val'\): sample 6 has no recorded sensor"):
        with ShardWriter(tmp_path / "d", config, shard_size=4) as writer:
            writer.add("val", Split(split.frames, split.label, masks))
    assert not (tmp_path / "d").exists()


def test_writing_over_an_existing_dataset_needs_overwrite(sharded_dir: Path, dataset_dir: Path, config: ModelConfig) -> None:
    with pytest.raises(BundleError, match="exists and is not empty"):
        pack_npz(dataset_dir, sharded_dir, config, SHARD)


def _shard_file(root: Path, name: str) -> Path:
    return root / "train" / "shard-00001" / name


def test_missing_file_is_named(sharded_dir: Path, tmp_path: Path, config: ModelConfig) -> None:
    root = _copy(sharded_dir, tmp_path / "d")
    _shard_file(root, "scan.npy").unlink()
    with pytest.raises(DatasetError, match=r"shard-00001/scan.npy: file not found \(listed in .*dataset.json\)"):
        open_sharded(root, config)


def test_wrong_shape_and_dtype_name_sensor_expected_and_found(sharded_dir: Path, tmp_path: Path, config: ModelConfig) -> None:
    root = _copy(sharded_dir, tmp_path / "d")
    np.save(_shard_file(root, "scan.npy"), np.zeros((SHARD, 1, 32), np.float32))
    with pytest.raises(DatasetError, match=r"shard-00001/scan.npy: sensor 'scan' expected shape \[50, 1, 64\] "
                                           r"dtype float32, found shape \[50, 1, 32\] dtype float32"):
        open_sharded(root, config)
    np.save(_shard_file(root, "scan.npy"), np.zeros((SHARD, 1, 64), np.float64))
    with pytest.raises(DatasetError, match=r"sensor 'scan'.*found .*dtype float64"):
        open_sharded(root, config)


def test_hash_mismatch_is_named_when_the_shard_is_first_read(sharded_dir: Path, tmp_path: Path, config: ModelConfig) -> None:
    root = _copy(sharded_dir, tmp_path / "d")
    frames = np.load(_shard_file(root, "imu.npy"))
    frames[3] += 1.0  # same shape and dtype: only the hash can tell
    np.save(_shard_file(root, "imu.npy"), frames)
    train = open_sharded(root, config, ("train",))["train"]
    with pytest.raises(DatasetError, match=r"shard-00001/imu.npy: sha256 mismatch \(index [0-9a-f]{12}…, file [0-9a-f]{12}…\)"):
        train.read(np.array([SHARD + 3]))
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        train.verify()
    assert main(["data", "check", str(root)]) == 2


def test_bad_labels_and_nan_frames_get_the_npz_messages(tmp_path: Path, config: ModelConfig, dataset_dir: Path) -> None:
    split = load_dataset(dataset_dir, config, ("train",))["train"]
    bad = Split(split.frames, split.label.copy(), None)
    bad.label[60] = 8
    save_split(bad, tmp_path / "src" / "train.npz")
    with pytest.raises(DatasetError, match=r"train.npz: label 8 at sample 60 out of range 0\.\.7"):
        pack_npz(tmp_path / "src", tmp_path / "out", config, SHARD, splits=("train",))
    root = tmp_path / "ok"
    pack_npz(dataset_dir, root, config, SHARD, splits=("train",))
    frames = np.load(_shard_file(root, "odom.npy"))
    frames[7, 2] = np.inf
    np.save(_shard_file(root, "odom.npy"), frames)
    index = json.loads((root / INDEX).read_text())
    from edgemoe.core.bundle import sha256_file  # a consistent index: only the frame check can tell

    index["splits"]["train"]["shards"][1]["files"]["odom.npy"]["sha256"] = sha256_file(_shard_file(root, "odom.npy"))
    (root / INDEX).write_text(json.dumps(index))
    train = open_sharded(root, config, ("train",))["train"]
    with pytest.raises(DatasetError, match=r"shard-00001/odom.npy: sensor 'odom' has NaN/Inf at sample 7"):
        train.read(np.arange(SHARD, 2 * SHARD))


def test_index_that_disagrees_with_the_config_is_refused(sharded_dir: Path, config: ModelConfig) -> None:
    other = config.model_copy(update={"sensors": config.sensors[:3]})
    with pytest.raises(DatasetError, match=r"dataset.json: sensors .* do not match config 'robot4'"):
        open_sharded(sharded_dir, other)


def test_only_a_few_shards_stay_mapped(sharded_dir: Path, config: ModelConfig) -> None:
    train = open_sharded(sharded_dir, config, ("train",))["train"]
    for start in range(0, len(train), SHARD):
        train.read(np.arange(start, min(start + SHARD, len(train))))
        assert len(train._maps) <= OPEN_SHARDS


def _plan(source, epoch: int, batch: int, world: int, rank: int):  # type: ignore[no-untyped-def]
    sampler = lambda rec, rng: sample_masks(rec, 0.5, 4, rng)  # noqa: E731
    return plan_epoch(source, 4, sampler, seed=7, epoch=epoch, per_rank_batch=batch, world_size=world, rank=rank)


def test_ranks_split_each_global_batch_and_one_process_reads_the_same_steps(sharded_dir: Path, config: ModelConfig) -> None:
    train = open_sharded(sharded_dir, config, ("train",))["train"]
    single = _plan(train, 1, 32, 1, 0)
    ranks = [_plan(train, 1, 16, 2, r) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1])
    for j in range(len(single) - 1):  # the last step is padded on ranks
        np.testing.assert_array_equal(np.concatenate([p.index[j] for p in ranks]), single.index[j])
        np.testing.assert_array_equal(np.concatenate([p.masks[j] for p in ranks]), single.masks[j])
    seen = [np.concatenate(p.index[:-1]) for p in ranks]
    assert not set(seen[0]) & set(seen[1]), "no sample is read by two ranks"
    assert sorted(np.concatenate([single.index[-1], *seen])) == list(range(len(train)))
    again, later = _plan(train, 1, 32, 1, 0), _plan(train, 2, 32, 1, 0)
    np.testing.assert_array_equal(np.concatenate(again.index), np.concatenate(single.index))
    assert not np.array_equal(np.concatenate(later.index), np.concatenate(single.index))


def test_worker_processes_read_what_the_training_process_reads(sharded_dir: Path, config: ModelConfig) -> None:
    train = open_sharded(sharded_dir, config, ("train",))["train"]
    plan = _plan(train, 1, 64, 1, 0)
    inline = list(BatchLoader(train, workers=0).epoch(plan))
    workers = list(BatchLoader(train, workers=2).epoch(plan))
    assert len(inline) == len(workers) == len(plan)
    for (fa, la, ma), (fb, lb, mb) in zip(inline, workers):
        assert all(np.array_equal(fa[k].numpy(), fb[k].numpy()) for k in fa)
        assert np.array_equal(la.numpy(), lb.numpy()) and np.array_equal(ma, mb)


def test_cli_packs_and_checks(dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "pack", str(dataset_dir), "--out", str(tmp_path / "s"), "--shard-size", "100"]) == 0
    assert main(["data", "check", str(tmp_path / "s")]) == 0
    assert "ok, sharded (train 1500, val 375, test 500)" in capsys.readouterr().out
