"""The demo: its target and source sets, each with its own hold-out, and the source run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cars.config import ConfigError
from cars.data import read_dataset_info
from cars.data.synthetic_classes import ATTRIBUTES, design_classes
from cars.demo import prepare_demo_data, pretrain_config
from cars.learn.gradcam import box_area_share, center_hit, compute_cams
from cars.report.cam_models import build_random_model
from cars.report.cam_view import choose_cam_view
from cars.report.cams import pointing_tolerance
from cars.report.scoring import create_eval_dataset
from cars.sweep_config import PRESETS, DemoSpec, create_sweep_config

SPEC = DemoSpec(
    num_classes=2,
    train_per_class=4,
    test_per_class=1,
    source_classes=3,
    source_train_per_class=10,
    pretrain_epochs=1,
    pretrain_lr=1e-3,
    val_fraction=0.5,
    source_val_fraction=0.1,
)


def test_target_and_source_hold_out_their_own_fractions(tmp_path: Path) -> None:
    target, source = (read_dataset_info(d) for d in prepare_demo_data(SPEC, 0, root=tmp_path))
    assert (target.counts["train"], target.counts["val"]) == (4, 4)
    assert (source.counts["train"], source.counts["val"]) == (27, 3)
    assert (target.counts["test"], source.counts["test"]) == (2, 0)
    assert not set(target.class_names) & set(source.class_names)


def test_both_sets_are_painted_as_the_spec_says(tmp_path: Path) -> None:
    sets = prepare_demo_data(replace(SPEC, usual_colour_share=0.0), 0, root=tmp_path)
    for folder in sets:
        generator = read_dataset_info(folder).generator
        assert generator is not None and generator["usual_colour_share"] == 0.0


def test_source_holds_out_the_targets_fraction_by_default(tmp_path: Path) -> None:
    _, source = prepare_demo_data(replace(SPEC, source_val_fraction=None), 0, root=tmp_path)
    assert read_dataset_info(source).counts["val"] == 15


def test_demo_target_classes_are_new_combinations_of_the_source_parts() -> None:
    spec = PRESETS["demo"]["demo"]
    target = design_classes(spec.num_classes, seed=0, task="target")
    source = design_classes(spec.source_classes, seed=0, task="source")
    assert spec.usual_colour_share == 0  # paint is no part of a class: the shapes tell
    parts = sorted(ATTRIBUTES.keys() - {"colour"})
    seen = {part: {getattr(design, part) for design in source} for part in parts}
    for i, design in enumerate(target):
        shared = [part for part in parts if getattr(design, part) in seen[part]]
        assert len(shared) >= len(parts) - 1, (design.name, shared)
        for other in [*source, *target[:i]]:
            assert sum(getattr(design, p) != getattr(other, p) for p in parts) >= 2, other.name


def test_the_source_run_follows_the_demo_spec_on_the_whole_cluster() -> None:
    sweep = create_sweep_config("demo", "s")
    spec = sweep.demo
    assert spec is not None
    config = pretrain_config(sweep, spec, "/source", {"CPU": 4.0})
    assert (config.regime, config.weights, config.data) == ("scratch", None, "/source")
    assert (config.epochs, config.lr) == (spec.pretrain_epochs, spec.pretrain_lr)
    assert (config.batch_size, config.augment) == (spec.pretrain_batch_size, spec.pretrain_augment)
    assert config.warmup_epochs == spec.pretrain_warmup_epochs
    assert config.cpus_per_worker == 4.0
    # Without a batch size of its own, the source model trains with the sweep's.
    default = pretrain_config(sweep, replace(spec, pretrain_batch_size=None), "/s", {"CPU": 2.0})
    assert default.batch_size == sweep.batch_size


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pretrain_augment", "heavy", "pretrain_augment='heavy' is not valid"),
        ("pretrain_batch_size", 0, "pretrain_batch_size=0 is not valid"),
        ("pretrain_warmup_epochs", -1.0, "pretrain_warmup_epochs=-1.0 is not valid"),
        ("usual_colour_share", 1.2, "usual_colour_share=1.2 is not valid"),
    ],
)
def test_a_bad_pretraining_setting_is_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(SPEC, **{field: value})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("photo_widths", (300, 200), r"photo_widths=\(300, 200\) is not valid"),
        ("photo_widths", (16, 200), r"photo_widths=\(16, 200\) is not valid"),
        ("car_length_share", (0.5, 1.2), r"car_length_share=\(0.5, 1.2\) is not valid"),
    ],
)
def test_a_bad_photo_setting_is_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(SPEC, **{field: value})


def test_the_demos_photos_leave_its_gradcams_room(tmp_path: Path) -> None:
    """The report explains the demo's test photos whole: on average the box covers at most
    half of them, pointing at the centre hits at most 70 %, and act4 is at least 4 x 4."""
    sweep = create_sweep_config("demo", "s")
    spec = sweep.demo
    assert spec is not None
    # 160 test photos to measure; the training photos are drawn too, so few of them.
    small = replace(
        spec,
        num_classes=4,
        train_per_class=4,
        test_per_class=40,
        source_classes=2,
        source_train_per_class=4,
    )
    target, _ = prepare_demo_data(small, 0, root=tmp_path)
    generator = read_dataset_info(target).generator
    assert generator is not None
    assert generator["widths"] == list(spec.photo_widths or ())
    assert generator["car_length_share"] == list(spec.car_length_share or ())
    config = sweep.create_train_config(target, "frozen", 1e-3, "none")
    view = choose_cam_view(config, create_eval_dataset(config))
    dataset = view.create_dataset(target)
    size, tolerance = view.image_size, pointing_tolerance(view.image_size)
    boxes = [view.input_box(dataset, i) for i in range(len(dataset))]
    assert len(boxes) == 160
    assert np.mean([box_area_share((size, size), b) for b in boxes]) <= 0.5
    assert np.mean([center_hit((size, size), b, tolerance) for b in boxes]) <= 0.7
    model = build_random_model(2, 0)
    assert min(compute_cams(model, dataset[0][0][None]).map_size) >= 4
