"""The report's Grad-CAM models and view, on real checkpoints and a real synthetic set:
the untrained baseline beside every regime, and whole photos for trials cropped to boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cars.config import RANDOM_INIT, TrainConfig
from cars.data import SyntheticCars, prepare_synthetic, read_dataset_info
from cars.learn.checkpoint import save_checkpoint
from cars.learn.model import build_model
from cars.report.cam_models import CamModel, build_random_model, load_cam_models
from cars.report.cam_view import INPUTS, PHOTOS, CamView, choose_cam_view
from cars.report.cams import add_measured_images, write_gradcam
from cars.report.scoring import create_eval_dataset
from cars.sweep_config import PRESETS

SEED = 3
REGIME_NAMES = ("scratch", "frozen", "finetune")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small target set drawn as the demo draws its photos: cars with room around them.

    Two test photos per class: every model's CAMs at the photos' size are most of the
    module's time, and six photos are as many as its claims need.
    """
    spec = PRESETS["demo"]["demo"]
    out = tmp_path_factory.mktemp("scenes") / "set"
    cars = SyntheticCars(
        num_classes=3,
        train_per_class=2,
        test_per_class=2,
        seed=0,
        widths=spec.photo_widths,
        car_length_share=spec.car_length_share,
        usual_colour_share=0.0,
    )
    prepare_synthetic(out, cars, val_fraction=0.0, progress=False)
    return out


def _train_one_step(model: torch.nn.Module) -> None:
    """Move every trainable weight, as any training does."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = torch.randn(4, 3, 32, 32)
    torch.nn.functional.cross_entropy(model(inputs), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    model.eval()


def _save(folder: Path, model: torch.nn.Module, config: TrainConfig, names: list[str]) -> str:
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    save_checkpoint(
        folder,
        model=model,
        optimizer=optimizer,
        scheduler=None,
        epoch=1,
        config=config.to_dict(),
        class_names=names,
        metrics={"val_acc": 0.5},
    )
    return str(folder)


@pytest.fixture(scope="module")
def trials(
    scenes: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pd.DataFrame, list[TrainConfig], list[str]]:
    """Each regime's best trial on ``scenes``: a trained checkpoint and its config."""
    root = tmp_path_factory.mktemp("trials")
    names = list(read_dataset_info(str(scenes)).class_names)
    torch.manual_seed(11)  # the source model: another seed, another task
    source_model = build_model("scratch", 3)
    _train_one_step(source_model)
    source = _save(
        root / "source",
        source_model,
        TrainConfig(data="/source", regime="scratch"),
        ["a", "b", "c"],
    )
    rows, configs = [], []
    for regime in REGIME_NAMES:
        config = TrainConfig(
            data=str(scenes),
            regime=regime,
            image_size=64,
            bbox_crop=True,
            seed=SEED,
            weights=None if regime == "scratch" else source,
            trainable_blocks=2 if regime == "finetune" else None,
        )
        torch.manual_seed(SEED)  # as the trial's worker does before it builds its model
        model = build_model(regime, 3, config.trainable_blocks, config.weights, class_names=names)
        _train_one_step(model)
        rows.append(
            {
                "regime": regime,
                "trial_id": f"{regime[0]}1",
                "checkpoint": _save(root / regime, model, config, names),
            }
        )
        configs.append(config)
    return pd.DataFrame(rows), configs, names


@pytest.fixture(scope="module")
def cam_models(trials: tuple[pd.DataFrame, list[TrainConfig], list[str]]) -> list[CamModel]:
    """The report's Grad-CAM models of ``trials`` (frozen best overall), loaded once: the
    tests only read them."""
    regimes, configs, names = trials
    return load_cam_models(regimes, configs, names, best_index=1, seed=SEED)


def test_the_baseline_is_a_scratch_trials_start_and_no_regimes_weights(
    cam_models: list[CamModel],
) -> None:
    models = cam_models
    assert [m.regime for m in models] == [*REGIME_NAMES, RANDOM_INIT]
    baseline = models[-1]
    assert baseline.baseline and baseline.name == RANDOM_INIT and baseline.trial_id is None
    assert [m.best_overall for m in models] == [False, True, False, False]
    assert not baseline.model.training
    random_weights = dict(baseline.model.named_parameters())
    for regime in models[:-1]:
        assert not regime.baseline
        same = [
            name
            for name, weight in regime.model.named_parameters()
            if torch.equal(weight, random_weights[name])
        ]
        assert not same, f"the baseline shares {regime.regime}'s weights {same[:3]}"
    # The same seed rule as the trials: the weights a scratch trial of the seed starts from.
    torch.manual_seed(SEED)
    start = build_model("scratch", 3)
    for name, weight in start.named_parameters():
        assert torch.equal(weight, random_weights[name]), name
    other = dict(build_random_model(3, SEED + 1).named_parameters())
    assert not torch.equal(other["conv1.weight"], random_weights["conv1.weight"])


def test_building_the_baseline_leaves_the_callers_random_state_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_random_model(2, SEED)
    assert torch.equal(torch.rand(3), expected)


def test_measured_images_are_the_drawn_ones_and_others_at_random() -> None:
    drawn = np.array([3, 7])
    measured = add_measured_images(drawn, 20, 6, seed=0)
    assert len(measured) == 6 and {3, 7} <= set(measured)
    assert list(measured) == sorted(set(measured))
    assert np.array_equal(measured, add_measured_images(drawn, 20, 6, seed=0))
    assert not np.array_equal(measured, add_measured_images(drawn, 20, 6, seed=1))
    assert list(add_measured_images(np.array([1, 3]), 5, 48, seed=0)) == [0, 1, 2, 3, 4]
    assert list(add_measured_images(drawn, 20, 1, seed=0)) == [3, 7]  # the drawn, always


def test_trials_cropped_to_the_boxes_are_explained_on_whole_photos(scenes: Path) -> None:
    config = TrainConfig(data=str(scenes), regime="frozen", image_size=64, bbox_crop=True)
    view = choose_cam_view(config, create_eval_dataset(config))
    # The demo's photos are about three times the crop's height: the car keeps its scale.
    assert view.kind == PHOTOS and not view.bbox_crop
    assert view.image_size % 32 == 0 and 128 <= view.image_size <= 256
    uncropped = config.replace(bbox_crop=False)
    assert choose_cam_view(uncropped, create_eval_dataset(uncropped)) == CamView(
        INPUTS, 64, False, config.bbox_margin
    )


def test_the_demo_explains_cars_with_room_around_them(
    trials: tuple[pd.DataFrame, list[TrainConfig], list[str]],
    cam_models: list[CamModel],
    scenes: Path,
    tmp_path: Path,
) -> None:
    _, configs, names = trials
    view = choose_cam_view(configs[1], create_eval_dataset(configs[1]))
    table = write_gradcam(
        cam_models,
        view.create_dataset(str(scenes)),
        indices=np.arange(6),
        drawn=np.array([2, 5]),
        view=view,
        class_names=names,
        out=tmp_path,
    )
    assert len(table) == 6 * 4
    for _, rows in table.groupby("model"):
        assert list(rows.loc[rows["drawn"], "test_index"]) == [2, 5]
    # Each CAM explains the image's true class, whatever the model answers.
    assert (table["cam_label"] == table["true_label"]).all()
    per_model = table.groupby("model", sort=False)
    assert list(per_model.groups) == [*(f"{r}-{r[0]}1" for r in REGIME_NAMES), RANDOM_INIT]
    assert per_model["test_index"].apply(tuple).nunique() == 1  # the same images for all
    baseline = table[table["baseline"]]
    assert set(baseline["model"]) == set(baseline["regime"]) == {RANDOM_INIT}
    assert baseline["trial_id"].isna().all() and not baseline["best_overall"].any()
    assert table.loc[~table["baseline"], "trial_id"].notna().all()
    # Whole photos: room around the car, and a map that can place it.
    assert (table["view"] == PHOTOS).all() and (table["input_size"] == view.image_size).all()
    assert table["box_area_share"].mean() <= 0.5
    assert (table[["map_height", "map_width"]] >= 4).all(axis=None)
    for figure in ("regimes.png", "measures.png", f"{RANDOM_INIT}.png", "scratch-s1.png"):
        assert (tmp_path / figure).is_file(), figure
