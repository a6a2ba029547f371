"""The frozen regime on cached features, without Ray: the same training as on images,
a cache keyed by what determines the features, and never a half-written cache read.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cars.config import TrainConfig
from cars.data import CarsDataset, create_transform_for, read_dataset_info
from cars.learn.checkpoint import save_checkpoint
from cars.learn.engine import evaluate, train_one_epoch
from cars.learn.features import (
    MANIFEST_FILE,
    feature_head,
    feature_identity,
    feature_key,
    load_or_compute_features,
    uses_feature_cache,
    write_feature_cache,
)
from cars.learn.model import build_model
from cars.learn.optim import create_loss
from cars.learn.training_state import TrainingState, create_training_state

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _config(data: Path, **changes: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "data": str(data),
        "regime": "frozen",
        "augment": "none",
        "epochs": 2,
        "batch_size": 8,
        "image_size": 32,
        "lr": 1e-2,
        "seed": 3,
    }
    return TrainConfig(**{**values, **changes})


def _datasets(config: TrainConfig) -> dict[str, CarsDataset]:
    return {
        "train": CarsDataset(
            config.data, "train", create_transform_for(config.augment, 32, is_training=True)
        ),
        "val": CarsDataset(config.data, "val", create_transform_for("none", 32, is_training=False)),
    }


def _frozen_model(config: TrainConfig) -> nn.Module:
    torch.manual_seed(config.seed)
    info = read_dataset_info(config.data)
    model = build_model("frozen", info.num_classes, weights=None)
    return model.to(memory_format=torch.channels_last)


def _train(
    config: TrainConfig,
    model: nn.Module,
    trained: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    *,
    resume_from: Path | None = None,
    stop_after: int | None = None,
) -> tuple[list[dict[str, float]], TrainingState]:
    """Train as the Ray Train loop does: the same loader settings, schedule and loss."""
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_set, batch_size=config.batch_size, shuffle=True, drop_last=True, generator=generator
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size)
    state = create_training_state(model, config, len(train_loader), resume_from)
    on_images = trained is model
    epochs = []
    for _ in range(state.start_epoch, (stop_after or config.epochs) + 1):
        train = train_one_epoch(
            trained,
            train_loader,
            state.optimizer,
            loss_fn=create_loss(config, 4),
            scheduler=state.scheduler,
            device="cpu",
            channels_last=on_images,
        )
        val = evaluate(trained, val_loader, device="cpu", channels_last=on_images)
        epochs.append({"train_loss": train["loss"], "val_loss": val["loss"], "val_acc": val["acc"]})
    return epochs, state


@pytest.fixture(scope="module")
def computed(prepared_set: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A store holding the features of the frozen model of ``_config``, computed once."""
    config = _config(prepared_set)
    store = tmp_path_factory.mktemp("features")
    cache = load_or_compute_features(
        _frozen_model(config), _datasets(config), store=str(store), batch_size=16
    )
    return store, cache


def test_training_on_cached_features_matches_training_on_images(
    prepared_set: Path, computed: tuple[Path, Any]
) -> None:
    config = _config(prepared_set)
    datasets = _datasets(config)
    _, cache = computed

    on_images = _frozen_model(config)
    image_epochs, _ = _train(config, on_images, on_images, datasets["train"], datasets["val"])
    on_features = _frozen_model(config)
    feature_epochs, _ = _train(
        config,
        on_features,
        feature_head(on_features),
        cache.splits["train"].to_dataset(),
        cache.splits["val"].to_dataset(),
    )

    assert cache.computed
    assert cache.splits["train"].features.shape == (36, 2048)
    for images, features in zip(image_epochs, feature_epochs, strict=True):
        assert features == pytest.approx(images, rel=1e-4, abs=1e-5)
    # The head trained on features is the head of the whole model, as checkpoints save it.
    trained = on_features.state_dict()
    for name, value in on_images.state_dict().items():
        torch.testing.assert_close(trained[name], value, rtol=1e-4, atol=1e-5)
    assert not torch.equal(trained["fc.weight"], _frozen_model(config).state_dict()["fc.weight"])


def test_a_checkpoint_of_a_run_on_features_resumes_on_features_or_on_images(
    prepared_set: Path, computed: tuple[Path, Any], tmp_path: Path
) -> None:
    config = _config(prepared_set)
    datasets = _datasets(config)
    _, cache = computed
    features = (cache.splits["train"].to_dataset(), cache.splits["val"].to_dataset())
    first = _frozen_model(config)
    _, state = _train(config, first, feature_head(first), *features, stop_after=1)
    save_checkpoint(
        tmp_path,
        model=first,
        optimizer=state.optimizer,
        scheduler=state.scheduler,
        epoch=1,
        config=config.to_dict(),
        class_names=list(read_dataset_info(config.data).class_names),
        metrics={},
    )

    # Another seed: the checkpoint, not the seed, decides the head.
    on_features = _frozen_model(config.replace(seed=9))
    feature_epochs, feature_state = _train(
        config, on_features, feature_head(on_features), *features, resume_from=tmp_path
    )
    on_images = _frozen_model(config.replace(seed=9))
    image_epochs, _ = _train(
        config, on_images, on_images, datasets["train"], datasets["val"], resume_from=tmp_path
    )

    assert len(feature_epochs) == 1  # epoch 2 only
    steps_per_epoch = 36 // config.batch_size
    assert feature_state.scheduler.last_epoch == 2 * steps_per_epoch
    for features, images in zip(feature_epochs, image_epochs, strict=True):
        assert features == pytest.approx(images, rel=1e-4, abs=1e-5)
    torch.testing.assert_close(on_features.fc.weight, on_images.fc.weight, rtol=1e-4, atol=1e-5)


def test_a_second_run_reads_the_cache_and_gets_the_same_features(
    prepared_set: Path, computed: tuple[Path, Any]
) -> None:
    config = _config(prepared_set)
    store, first = computed
    # Another head on the same backbone: the cache ignores the head.
    model = _frozen_model(config)
    nn.init.normal_(model.fc.weight)
    second = load_or_compute_features(model, _datasets(config), store=str(store), batch_size=16)

    assert not second.computed
    assert second.key == first.key
    assert second.location == str(store / first.key)
    for name, split in first.splits.items():
        assert torch.equal(second.splits[name].features, split.features)
        assert torch.equal(second.splits[name].labels, split.labels)
    assert "read features of 36 train, 12 val images" in second.describe()


def test_a_cache_without_its_manifest_is_computed_again(
    prepared_set: Path, computed: tuple[Path, Any], tmp_path: Path
) -> None:
    config = _config(prepared_set)
    store, first = computed
    shutil.copytree(store / first.key, tmp_path / first.key)
    # What a computation killed before its commit leaves: split files, no manifest.
    (tmp_path / first.key / MANIFEST_FILE).unlink()
    (tmp_path / first.key / "val.safetensors").write_bytes(b"half a file")

    again = load_or_compute_features(
        _frozen_model(config), _datasets(config), store=str(tmp_path), batch_size=16
    )

    assert again.computed
    assert (tmp_path / first.key / MANIFEST_FILE).is_file()
    assert torch.equal(again.splits["val"].features, first.splits["val"].features)


def test_the_key_follows_the_backbone_input_and_data_but_not_the_head(
    prepared_set: Path, synthetic_source: Path, tmp_path: Path
) -> None:
    config = _config(prepared_set)
    model = _frozen_model(config)
    key = feature_key(feature_identity(model, _datasets(config), None))

    with torch.no_grad():
        model.fc.weight.add_(1.0)
    assert feature_key(feature_identity(model, _datasets(config), None)) == key

    assert feature_key(feature_identity(model, _datasets(config), torch.bfloat16)) != key
    larger = {
        name: CarsDataset(config.data, name, create_transform_for("none", 40, is_training=False))
        for name in ("train", "val")
    }
    assert feature_key(feature_identity(model, larger, None)) != key
    cropped = {
        name: CarsDataset(config.data, name, d.transform, bbox_crop=True)
        for name, d in _datasets(config).items()
    }
    assert feature_key(feature_identity(model, cropped, None)) != key

    with torch.no_grad():
        model.bn4.weight.mul_(1.001)
    assert feature_key(feature_identity(model, _datasets(config), None)) != key

    from cars.data import prepare_dataset

    other = tmp_path / "other"
    prepare_dataset(synthetic_source, other, val_fraction=0.5, progress=False, seed=0)
    other_sets = {
        name: CarsDataset(str(other), name, d.transform) for name, d in _datasets(config).items()
    }
    assert feature_key(feature_identity(_frozen_model(config), other_sets, None)) != key


def test_the_training_transform_of_no_augmentation_is_the_evaluation_transform() -> None:
    training = create_transform_for("none", 64, is_training=True)
    evaluation = create_transform_for("basic", 64, is_training=False)
    assert repr(training) == repr(evaluation)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, True),
        ({"feature_cache": False}, False),
        ({"augment": "basic"}, False),
        ({"mixup": 0.2}, False),
        ({"regime": "finetune", "trainable_blocks": 1}, False),
        ({"regime": "finetune", "trainable_blocks": 0}, True),
        ({"regime": "scratch"}, False),
    ],
)
def test_only_runs_of_a_frozen_backbone_on_unchanging_inputs_use_the_cache(
    changes: dict[str, Any], expected: bool
) -> None:
    assert uses_feature_cache(_config(Path("/data"), **changes)) is expected


def test_the_cache_round_trips_through_s3(
    prepared_set: Path, computed: tuple[Path, Any], s3_bucket: str
) -> None:
    config = _config(prepared_set)
    _, first = computed
    model = _frozen_model(config)
    store = f"{s3_bucket}/sweep/features"
    write_feature_cache(
        f"{store}/{first.key}", feature_identity(model, _datasets(config), None), first.splits
    )

    read = load_or_compute_features(model, _datasets(config), store=store, batch_size=16)

    assert not read.computed
    assert read.location == f"{store}/{first.key}"
    assert torch.equal(read.splits["train"].features, first.splits["train"].features)
