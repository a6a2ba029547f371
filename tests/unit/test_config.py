"""The typed training config: defaults, resolution of regimes, and errors that name the field."""

from __future__ import annotations

import math

import pytest

from cars.config import (
    BEST_SCORE,
    METRIC,
    NUM_BLOCKS,
    SCORE,
    TIE_BREAK,
    ConfigError,
    TrainConfig,
    resolve_trainable_blocks,
    selection_score,
    selection_scores,
)


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
        ({"lr_batch_size": 0}, "lr_batch_size"),
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


# --- what "best" means ----------------------------------------------------------------


@pytest.mark.parametrize("images", [7, 40, 800, 8041])
def test_selection_score_orders_by_accuracy_then_lower_loss(images: int) -> None:
    # Accuracies as an evaluation computes them (correct / images), losses from 0 up.
    epochs = [
        {METRIC: correct / images, TIE_BREAK: loss}
        for correct in (0, 1, images // 2, images - 1, images)
        for loss in (0.0, 1e-4, 0.7, 0.71, 5.0, 40.0)
    ]
    for a in epochs:
        for b in epochs:
            by_rule = (a[METRIC], -a[TIE_BREAK]) > (b[METRIC], -b[TIE_BREAK])
            assert (selection_score(a) > selection_score(b)) == by_rule, (a, b)


def test_selection_score_treats_float_noise_as_a_tie() -> None:
    # The same accuracy summed in another order (several workers) differs in the last bits.
    noisy = sum([0.1] * 10) / 10
    assert noisy != 0.1
    assert selection_score({METRIC: noisy, TIE_BREAK: 0.5}) > selection_score(
        {METRIC: 0.1, TIE_BREAK: 0.6}
    )


def test_an_epoch_without_validation_has_no_score() -> None:
    assert math.isnan(selection_score({METRIC: float("nan"), TIE_BREAK: float("nan")}))
    assert math.isnan(selection_score({"epoch": 1}))
    assert selection_score({METRIC: 0.5}) == selection_score({METRIC: 0.5, TIE_BREAK: None})


def test_selection_scores_give_the_latest_epoch_and_the_best_so_far() -> None:
    history = [
        {METRIC: 0.5, TIE_BREAK: 1.0},
        {METRIC: float("nan"), TIE_BREAK: float("nan")},
        {METRIC: 0.5, TIE_BREAK: 0.9},
        {METRIC: 0.4, TIE_BREAK: 0.1},
    ]
    scores = selection_scores(history)
    assert scores[SCORE] == selection_score(history[-1])
    assert scores[BEST_SCORE] == selection_score(history[2])
    assert math.isnan(selection_scores(history[1:2])[BEST_SCORE])
