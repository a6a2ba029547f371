"""Ray Train runs of the real model on the tiny synthetic set, over 2 CPU workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from faults import WatchedWorker, create_watched_trainer, epochs_by_process, read_epoch_log
from torch.optim.swa_utils import update_bn
from torch.utils.data import DistributedSampler

from cars.cluster.train import run_training
from cars.config import METRIC, TrainConfig
from cars.data import CarsDataset, create_transform_for
from cars.learn.checkpoint import load_checkpoint
from cars.learn.model import build_model
from cars.learn.optim import WarmupCosine
from cars.runs import StoredRun, read_run

pytestmark = pytest.mark.slow


def _config(data: Path, **changes: object) -> TrainConfig:
    values: dict = {
        "data": str(data),
        "regime": "scratch",
        "epochs": 2,
        "batch_size": 8,
        "image_size": 32,
        "num_workers": 2,
        "cpus_per_worker": 1.0,
        "max_failures": 1,
        "warmup_epochs": 1.0,
    }
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def frozen_on_images(
    ray_cluster: None, prepared_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainConfig, StoredRun, Path]:
    """A two-worker frozen run on images, read by the tests of a plain run and of one on
    cached features: its config, what it stored, and the folder for more runs."""
    root = tmp_path_factory.mktemp("frozen")
    config = _config(prepared_set, regime="frozen", augment="none", lr=1e-2, seed=5).replace(
        feature_store=str(root / "features"), feature_cache=False
    )
    return config, run_training(config, storage_path=str(root), name="frozen-images"), root


def test_two_worker_run_reports_every_epoch_with_a_checkpoint(
    frozen_on_images: tuple[TrainConfig, StoredRun, Path],
) -> None:
    config, run, _ = frozen_on_images

    assert run.latest is not None
    metrics = run.latest.metrics
    assert metrics["epoch"] == 2
    assert metrics["world_size"] == 2
    # 36 training images split over 2 workers in batches of 4: 4 full batches each.
    assert metrics["train_images"] == 32
    # Validation is sharded without padding: each of the 12 images counts once.
    assert metrics["val_images"] == 12
    assert 0.0 <= metrics[METRIC] <= 1.0
    assert [c.epoch for c in run.checkpoints] == [1, 2]

    state = load_checkpoint(run.latest.location)
    assert state["epoch"] == 2
    assert state["config"] == config.to_dict()
    assert len(state["class_names"]) == 4
    assert state["model"]["fc.weight"].shape == torch.Size([4, 2048])


def test_a_crashed_worker_is_restarted_and_resumes_its_schedule(
    ray_cluster: None, prepared_set: Path, tmp_path: Path
) -> None:
    log, marker = tmp_path / "epochs.jsonl", tmp_path / "crashed"
    config = _config(prepared_set, epochs=3, checkpoints_to_keep=3)
    watched = WatchedWorker(
        str(log), crash_in_epoch=2, marker=str(marker), run_dir=str(tmp_path / "crash-once")
    )
    trainer = create_watched_trainer(
        config, storage_path=str(tmp_path), name="crash-once", watched=watched
    )
    result = trainer.fit()
    run = read_run(str(tmp_path / "crash-once"))

    assert marker.exists(), "the worker never crashed"
    crashed_at = float(marker.read_text())
    assert result.error is None
    assert run.latest is not None and run.latest.metrics["epoch"] == 3
    # Two worker groups: the first finished epoch 1 and died in the middle of
    # epoch 2; the second began at epoch 2, after the last checkpoint, so no
    # finished epoch ran twice.
    assert epochs_by_process(read_epoch_log(log), rank=0) == [[1], [2, 3]]
    assert epochs_by_process(read_epoch_log(log), rank=1) == [[1], [2, 3]]
    # Every checkpoint is kept, and epoch 1's was not written again after the crash.
    assert [c.epoch for c in run.checkpoints] == [1, 2, 3]
    assert sorted(m["epoch"] for _, m in result.best_checkpoints) == [1, 2, 3]
    first = Path(run.checkpoints[0].location)
    assert all(f.stat().st_mtime < crashed_at for f in first.iterdir())

    # The learning-rate schedule continued instead of restarting: its step count
    # and the last epoch's rate are those of an uninterrupted run.
    state = load_checkpoint(run.latest.location)
    steps_per_epoch = 4
    assert state["scheduler"]["last_epoch"] == 3 * steps_per_epoch
    schedule = WarmupCosine(steps_per_epoch, 3 * steps_per_epoch, config.min_lr_ratio)
    expected_lr = config.lr * schedule(3 * steps_per_epoch)
    assert run.latest.metrics["lr"] == pytest.approx(expected_lr)
    # The whole curve survived the restart, once per epoch.
    assert [row["epoch"] for row in run.history] == [1, 2, 3]


def test_a_frozen_run_on_cached_features_matches_one_on_images(
    frozen_on_images: tuple[TrainConfig, StoredRun, Path],
) -> None:
    config, on_images, root = frozen_on_images
    assert config.feature_store is not None
    store = Path(config.feature_store)
    assert not store.exists()
    on_features = run_training(
        config.replace(feature_cache=True), storage_path=str(root), name="frozen-features"
    )

    assert on_images.latest is not None and on_features.latest is not None
    # The two workers computed half of the features each; rank 0 stored all of them.
    (manifest,) = store.glob("*/manifest.json")
    assert json.loads(manifest.read_text())["splits"] == {"train": 36, "val": 12}

    image_curve, feature_curve = on_images.history, on_features.history
    compared = ("train_loss", "train_acc", "val_loss", METRIC, "val_top5", "lr", "train_images")
    for images, features in zip(image_curve, feature_curve, strict=True):
        assert {k: features[k] for k in compared} == pytest.approx(
            {k: images[k] for k in compared}, rel=1e-4, abs=1e-5
        )
        assert features["trainable_params"] == images["trainable_params"] == 2048 * 4 + 4

    # Checkpoints hold the whole model, its head trained as on images.
    image_model = load_checkpoint(on_images.latest.location)["model"]
    feature_model = load_checkpoint(on_features.latest.location)["model"]
    assert feature_model.keys() == image_model.keys()
    for name, value in image_model.items():
        torch.testing.assert_close(feature_model[name], value, rtol=1e-4, atol=1e-5)


def _shard_batch(dataset: CarsDataset, indices: list[int]) -> torch.Tensor:
    """The images at ``indices`` as one batch of the model's input (pixels scaled to [-1, 1])."""
    pixels = torch.stack([dataset[i][0] for i in indices])
    return (pixels.float() / 255 - 0.5) / 0.5


def test_validation_scores_a_model_whose_batchnorm_statistics_were_recomputed(
    ray_cluster: None, prepared_set: Path, tmp_path: Path
) -> None:
    # One step per worker over half of the 36 training images each, then precise BN
    # over that same half: the statistics of the model that validation then scores.
    config = _config(
        prepared_set, epochs=1, batch_size=36, augment="none", seed=5,
        precise_bn_samples=36,
    )  # fmt: skip
    run = run_training(config, storage_path=str(tmp_path), name="precise-bn")
    assert run.latest is not None
    trained = load_checkpoint(run.latest.location)["model"]

    # An independent recompute: torch's own update_bn on each rank's shard of the
    # epoch (torch's DistributedSampler permutation of the run's seed), averaged.
    train_set = CarsDataset(
        config.data, "train", create_transform_for("none", 32, is_training=False)
    )
    model = build_model("scratch", 4)
    per_rank = []
    for rank in range(2):
        sampler = DistributedSampler(range(36), num_replicas=2, rank=rank, seed=config.seed)
        sampler.set_epoch(1)
        model.load_state_dict(trained)
        update_bn([(_shard_batch(train_set, list(sampler)),)], model)
        per_rank.append({k: v.clone() for k, v in model.state_dict().items() if "running" in k})
    statistics = {k: (per_rank[0][k] + per_rank[1][k]) / 2 for k in per_rank[0]}
    assert len(statistics) == 2 * 40  # every BatchNorm of Xception trains in scratch
    for name, expected in statistics.items():
        torch.testing.assert_close(trained[name], expected, rtol=1e-3, atol=1e-4, msg=name)

    # Validation scored the checkpointed model, statistics included.
    val_set = CarsDataset(config.data, "val", create_transform_for("none", 32, is_training=False))
    model.load_state_dict(trained)
    model.eval()
    with torch.no_grad():
        logits = model(_shard_batch(val_set, list(range(len(val_set)))))
    labels = torch.as_tensor(val_set.labels)
    assert run.latest.metrics[METRIC] == pytest.approx((logits.argmax(1) == labels).float().mean())
    assert run.latest.metrics["val_loss"] == pytest.approx(
        torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-4
    )
