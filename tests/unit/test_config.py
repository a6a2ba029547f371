"""The typed training config: defaults, resolution of regimes, and errors that name the field."""

from __future__ import annotations

import pytest

from cars.config import NUM_BLOCKS, ConfigError, TrainConfig, resolve_trainable_blocks


def test_regimes_force_their_depth() -> None:
    assert (
        TrainConfig(data="d", regime="scratch", trainable_blocks=3).trainable_blocks == NUM_BLOCKS
    )
    assert (
        TrainConfig(data="d", regime="frozen", trainable_blocks=3, weights="w").trainable_blocks
        == 0
    )
    assert TrainConfig(data="d", regime="finetune").trainable_blocks == 1
    assert TrainConfig(data="d", regime="finetune", trainable_blocks=8).trainable_blocks == 8


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"regime": "linear"}, "regime"),
        ({"trainable_blocks": 15}, "trainable_blocks"),
        ({"trainable_blocks": -1}, "trainable_blocks"),
        ({"augment": "heavy"}, "augment"),
        ({"lr": 0.0}, "lr"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"batch_size": 1, "num_workers": 2}, "batch_size"),
        ({"image_size": 16}, "image_size"),
        ({"regime": "scratch", "weights": "imagenet"}, "weights"),
        ({"backbone_lr_mult": 2.0}, "backbone_lr_mult"),
        ({"data": ""}, "data"),
        ({"precise_bn_samples": -1}, "precise_bn_samples"),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}="):
        TrainConfig(**{"data": "d", **changes})


def test_weights_none_string_means_random_init() -> None:
    config = TrainConfig(data="d", regime="scratch", weights="none")
    assert config.weights is None
    assert not config.pretrained


def test_round_trip_through_a_plain_dict() -> None:
    config = TrainConfig(data="s3://bucket/cars", regime="finetune", trainable_blocks=4, lr=3e-4)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"data": "d", "learning_rate": 1.0})


def test_global_batch_is_split_across_workers() -> None:
    assert TrainConfig(data="d", batch_size=64, num_workers=4).batch_size_per_worker == 16


def test_precise_bn_takes_enough_global_batches_for_its_samples_within_an_epoch() -> None:
    config = TrainConfig(data="d", batch_size=64, num_workers=4, precise_bn_samples=1000)
    assert config.precise_bn_batches(steps_per_epoch=100) == 16  # 16 x 64 >= 1000
    assert config.precise_bn_batches(steps_per_epoch=10) == 10  # the training set is smaller
    assert config.replace(precise_bn_samples=0).precise_bn_batches(100) == 0


def test_resolve_trainable_blocks_rejects_unknown_regime() -> None:
    with pytest.raises(ConfigError, match="regime="):
        resolve_trainable_blocks("partial", 2)
