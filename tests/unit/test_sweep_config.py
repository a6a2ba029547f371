"""Sweep configs and presets: validated up front, round-tripped for --resume."""

from __future__ import annotations

import pytest

from cars.config import ConfigError
from cars.learn.optim import run_lr
from cars.sweep_config import PRESETS, SweepConfig, create_sweep_config


@pytest.mark.parametrize("preset", ["smoke", "demo"])
def test_demo_presets_need_no_data(preset: str) -> None:
    config = create_sweep_config(preset, "s")
    assert config.demo is not None
    assert config.num_trials == config.num_samples * 3


def test_full_preset_requires_a_prepared_set() -> None:
    with pytest.raises(ConfigError, match="pass --data"):
        create_sweep_config("full", "s")
    config = create_sweep_config("full", "s", data="s3://bucket/cars")
    assert config.use_gpu and config.image_size == 299 and config.weights == "imagenet"


def test_overrides_replace_preset_values_and_none_keeps_them() -> None:
    config = create_sweep_config("demo", "s", epochs=7, batch_size=None)
    assert config.epochs == 7
    assert config.batch_size == PRESETS["demo"]["batch_size"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"regimes": ("scratch", "linear")}, "regimes="),
        ({"finetune_blocks": (0,)}, "finetune_blocks="),
        ({"augments": ("extreme",)}, "augments="),
        ({"lr_ranges": {"scratch": (1e-2, 1e-3)}}, "lr_ranges"),
        ({"num_samples": 0}, "num_samples="),
        ({"name": "a/b"}, "name="),
        ({"preset": "huge"}, "preset="),
        ({"epochs": 0}, "epochs="),
        ({"confirm": -1}, "confirm="),
        ({"gradcam_measured": 0}, "gradcam_measured="),
    ],
)
def test_bad_sweep_values_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_sweep_config("smoke", "s").replace(**changes)


def test_round_trip_through_json_dict() -> None:
    config = create_sweep_config("demo", "s", weights="/tmp/w.pt", data="/tmp/data")
    import json

    again = SweepConfig.from_dict(json.loads(config.to_json()))
    assert again == config


def test_trial_train_config_has_no_weights_for_scratch() -> None:
    config = create_sweep_config("demo", "s", weights="/tmp/w.pt")
    assert config.create_train_config("d", "scratch", 1e-3, "basic").weights is None
    assert config.create_train_config("d", "frozen", 1e-3, "basic").weights == "/tmp/w.pt"


def test_full_trials_scale_the_rates_drawn_for_batches_of_64_to_their_own() -> None:
    sweep = create_sweep_config("full", "s", data="/d")
    config = sweep.create_train_config("/d", "scratch", 1e-3, "basic")
    assert (config.batch_size, config.batch_size_per_worker, config.lr_batch_size) == (256, 128, 64)
    assert config.lr == 1e-3  # the drawn rate, as the report shows it
    assert run_lr(config) == pytest.approx(2e-3)  # AdamW: the square root of 4
    smaller = sweep.replace(batch_size=64).create_train_config("/d", "scratch", 1e-3, "basic")
    assert run_lr(smaller) == 1e-3
    demo = create_sweep_config("demo", "s").create_train_config("/d", "scratch", 1e-3, "none")
    assert demo.lr_batch_size is None and run_lr(demo) == 1e-3


def test_a_sweep_compiles_its_trials_when_asked() -> None:
    sweep = create_sweep_config("smoke", "s")
    assert not sweep.create_train_config("/d", "scratch", 1e-3, "none").compile
    compiled = sweep.replace(compile=True).create_train_config("/d", "frozen", 1e-3, "none")
    assert compiled.compile
