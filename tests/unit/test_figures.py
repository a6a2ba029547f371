"""Every report figure is a real, non-blank PNG, drawn from small synthetic inputs."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cars.config import RANDOM_INIT
from cars.figures import (
    REGIME_COLORS,
    plot_cam_measures,
    plot_gradcam_grid,
    plot_learning_curves,
    plot_regime_comparison,
    save_figure,
    shorten_name,
)
from cars.figures.curves import _best_trials
from cars.figures.measures import summarise_cam_measures
from cars.figures.style import BASELINE_COLOR, WRONG_COLOR
from cars.report.results import best_epoch, rank_trials
from cars.stats import mean_interval, proportion_interval

matplotlib.use("Agg")

SIZE = 64
LONG_NAME = "Chevrolet Silverado 2500HD Regular Cab 2012"
NAMES = [LONG_NAME, "Audi TT RS Coupe 2012", "Rolls-Royce Phantom Drophead Coupe Convertible 2012"]


def _read_png(path: Path) -> np.ndarray:
    assert path.exists(), f"{path} was not written"
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels.std() > 20, "the figure is (nearly) blank"
    packed = pixels.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    assert len(np.unique(packed)) > 50, "too few colours for a real plot"
    assert not list(path.parent.glob(".*partial")), "a temporary file was left behind"
    return pixels


def _pixels_of(pixels: np.ndarray, color: str, tolerance: int = 12) -> int:
    rgb = np.array(matplotlib.colors.to_rgb(color)) * 255
    return int((np.abs(pixels.astype(float) - rgb).max(axis=2) <= tolerance).sum())


def _scene(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Car-like images, their boxes, and Gaussian-blob CAMs centred on the cars."""
    rng = np.random.default_rng(0)
    images = np.empty((count, SIZE, SIZE, 3), dtype=np.uint8)
    boxes = np.empty((count, 4))
    cams = np.empty((count, SIZE, SIZE), dtype=np.float32)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    for i in range(count):
        images[i] = rng.integers(60, 200, 3)
        x1, y1 = rng.integers(2, 24, 2)
        x2, y2 = x1 + rng.integers(20, 38), y1 + rng.integers(14, 30)
        images[i, y1:y2, x1:x2] = rng.integers(0, 255, 3)
        boxes[i] = (x1, y1, x2, y2)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        cams[i] = np.exp(-((cols - cx) ** 2 + (rows - cy) ** 2) / (2 * 8.0**2))
    return images, boxes, cams


def _measures(count: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    energy = rng.uniform(0.1, 0.9, count)
    energy[0] = np.nan  # an all-zero CAM
    return pd.DataFrame(
        {
            "energy_inside": energy,
            "box_area_share": rng.uniform(0.1, 0.4, count),
            "pointing_hit": rng.uniform(size=count) > 0.5,
        }
    )


# ------------------------------------------------------------------ style


def test_save_figure_writes_a_png_atomically(tmp_path: Path) -> None:
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.plot([0, 1, 2], [2, 0, 1], linewidth=8)
    ax.imshow(np.random.default_rng(0).uniform(size=(20, 20)))
    path = save_figure(fig, tmp_path / "nested" / "plot.png")
    assert path == tmp_path / "nested" / "plot.png"
    _read_png(path)


def test_save_figure_keeps_the_old_file_when_drawing_fails(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    target.write_bytes(b"previous")
    fig = Figure()
    fig.text(0.5, 0.5, r"$\notacommand{x}$")  # mathtext fails at draw time
    with pytest.raises(ValueError):
        save_figure(fig, target)
    assert target.read_bytes() == b"previous"
    assert list(tmp_path.iterdir()) == [target]


def test_save_figure_wants_png_and_closes_pyplot_figures(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = plt.figure()
    with pytest.raises(ValueError, match=r"\.png"):
        save_figure(fig, tmp_path / "plot.pdf")
    assert fig.number not in plt.get_fignums()
    assert not list(tmp_path.iterdir())


def test_long_class_names_are_wrapped_but_keep_their_end() -> None:
    assert shorten_name("Audi TT RS Coupe 2012") == "Audi TT RS Coupe 2012"
    lines = shorten_name(LONG_NAME).split("\n")
    assert len(lines) == 2 and all(len(line) <= 28 for line in lines)
    assert " ".join(lines) == LONG_NAME
    short = shorten_name(NAMES[2], width=20)
    assert len(short.split("\n")) == 2 and short.endswith("Convertible 2012") and "…" in short


# ------------------------------------------------------------ learning curves


def _epochs() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    plan = [("scratch", "s1", 8), ("scratch", "s2", 3), ("frozen", "f1", 8), ("frozen", "f2", 1)]
    plan += [("finetune", "t1", 8), ("finetune", "t2", 2)]
    for regime, trial_id, count in plan:
        top = {"scratch": 0.5, "frozen": 0.4, "finetune": 0.8}[regime] * rng.uniform(0.7, 1)
        for epoch in range(1, count + 1):
            rows.append(
                {
                    "trial_id": trial_id,
                    "regime": regime,
                    "epoch": epoch,
                    "val_acc": top * (1 - np.exp(-epoch / 3)),
                    "train_acc": min(1.0, 1.5 * top * (1 - np.exp(-epoch / 3))),
                    "val_loss": 5 * np.exp(-epoch / 4) + 1,
                    "train_loss": 5 * np.exp(-epoch / 3),
                    "label": f"lr 3e-4, basic, {trial_id}",
                }
            )
    return pd.DataFrame(rows)


def test_learning_curves_colour_every_regime(tmp_path: Path) -> None:
    pixels = _read_png(plot_learning_curves(_epochs(), tmp_path / "curves.png"))
    for regime, color in REGIME_COLORS.items():
        assert _pixels_of(pixels, color) > 200, f"no {regime} line in its colour"
    assert pixels.shape[1] > pixels.shape[0]  # two panels side by side


def test_learning_curves_without_loss_have_one_panel(tmp_path: Path) -> None:
    epochs = _epochs()[["trial_id", "regime", "epoch", "val_acc"]]
    one = _read_png(plot_learning_curves(epochs, tmp_path / "one.png"))
    two = _read_png(plot_learning_curves(_epochs(), tmp_path / "two.png"))
    assert one.shape[1] < two.shape[1]


def test_learning_curves_of_a_single_epoch_trial(tmp_path: Path) -> None:
    epochs = pd.DataFrame(
        {"trial_id": ["a"], "regime": ["frozen"], "epoch": [1], "val_acc": [0.3], "val_loss": [2.0]}
    )
    pixels = _read_png(plot_learning_curves(epochs, tmp_path / "single.png"))
    assert _pixels_of(pixels, REGIME_COLORS["frozen"]) > 20  # the lone point is drawn


def test_learning_curves_mark_the_trials_and_epochs_the_report_chooses() -> None:
    # Two scratch trials tie on accuracy; the lower loss wins, and its later equal epoch.
    rows = [
        ("a", 1, 0.50, 1.0),
        ("a", 2, 0.75, 0.9),
        ("b", 1, 0.75, 0.6),
        ("b", 2, 0.50, 0.5),
        ("b", 3, 0.75, 0.6),
    ]
    epochs = pd.DataFrame(rows, columns=["trial_id", "epoch", "val_acc", "val_loss"])
    epochs = epochs.assign(regime="scratch")
    best = _best_trials(epochs)["scratch"]
    assert (best["trial_id"], int(best["epoch"])) == ("b", 3)
    trials = pd.DataFrame(
        [
            {"trial_id": t, "best_val_acc": r["val_acc"], "best_val_loss": r["val_loss"]}
            for t, r in ((t, best_epoch(c)) for t, c in epochs.groupby("trial_id"))
        ]
    )
    assert rank_trials(trials)["trial_id"].iloc[0] == best["trial_id"]


def test_learning_curves_reject_bad_tables(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        plot_learning_curves(_epochs().drop(columns=["val_acc"]), tmp_path / "x.png")
    with pytest.raises(ValueError, match="unknown regimes"):
        plot_learning_curves(
            _epochs().replace({"regime": {"frozen": "linear"}}), tmp_path / "x.png"
        )
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves(_epochs().iloc[:0], tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------- Grad-CAM grid


@pytest.mark.parametrize("count", [1, 8])
def test_gradcam_grid_of_one_and_eight_images(tmp_path: Path, count: int) -> None:
    images, boxes, cams = _scene(count)
    true_names = [NAMES[i % 3] for i in range(count)]
    pred_names = [NAMES[(i + (i % 2)) % 3] for i in range(count)]
    path = plot_gradcam_grid(
        images,
        cams,
        boxes,
        true_names,
        pred_names,
        np.linspace(0.2, 0.99, count),
        tmp_path / "grid.png",
        title="Best model (finetune): Grad-CAM of its predicted class on the test images",
        measures=_measures(count),
    )
    pixels = _read_png(path)
    assert pixels.shape[0] > (900 if count == 8 else 400)


def test_gradcam_grid_marks_wrong_predictions(tmp_path: Path) -> None:
    images, boxes, _ = _scene(3)
    cams = np.zeros((3, SIZE, SIZE), dtype=np.float32)  # a flat overlay: no red from the CAM
    args = (images, cams, boxes, NAMES)
    right = _read_png(
        plot_gradcam_grid(*args, NAMES, [0.9] * 3, tmp_path / "right.png", title="all correct")
    )
    wrong = _read_png(
        plot_gradcam_grid(
            *args, [NAMES[0], NAMES[0], NAMES[2]], [0.9] * 3, tmp_path / "wrong.png", title="one"
        )
    )
    assert _pixels_of(wrong, WRONG_COLOR) > _pixels_of(right, WRONG_COLOR) + 20


def test_gradcam_grid_rejects_mismatched_inputs(tmp_path: Path) -> None:
    images, boxes, cams = _scene(2)
    names = NAMES[:2]
    with pytest.raises(ValueError, match="uint8"):
        plot_gradcam_grid(
            images / 255, cams, boxes, names, names, [1, 1], tmp_path / "x.png", title="t"
        )
    with pytest.raises(ValueError, match="matching the images"):
        plot_gradcam_grid(
            images, cams[:, :32], boxes, names, names, [1, 1], tmp_path / "x.png", title="t"
        )
    with pytest.raises(ValueError, match="pred_names has 1"):
        plot_gradcam_grid(
            images, cams, boxes, names, names[:1], [1, 1], tmp_path / "x.png", title="t"
        )
    with pytest.raises(ValueError, match="measures"):
        plot_gradcam_grid(
            images,
            cams,
            boxes,
            names,
            names,
            [1, 1],
            tmp_path / "x.png",
            title="t",
            measures=_measures(3),
        )
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------- regime comparison


def _models(count: int, cams: np.ndarray) -> tuple[dict, dict, dict]:
    regimes = {"best overall (finetune)": "finetune", "frozen best": "frozen", "scratch": "scratch"}
    cams_by_model = {m: np.roll(cams, shift, axis=2) for shift, m in enumerate(regimes)}
    preds = {m: ([NAMES[i % 3] for i in range(count)], [0.5] * count) for m in regimes}
    return regimes, cams_by_model, preds


@pytest.mark.parametrize("count", [1, pytest.param(8, marks=pytest.mark.slow)])
def test_regime_comparison_colours_columns_by_regime(tmp_path: Path, count: int) -> None:
    images, boxes, cams = _scene(count)
    regimes, cams_by_model, preds = _models(count, cams)
    measures = {m: _measures(count) for m in regimes}
    path = plot_regime_comparison(
        images,
        boxes,
        [NAMES[(i + 1) % 3] for i in range(count)],
        cams_by_model,
        preds,
        tmp_path / "compare.png",
        model_regimes=regimes,
        measures_by_model=measures,
    )
    pixels = _read_png(path)
    for regime, color in REGIME_COLORS.items():
        assert _pixels_of(pixels, color) > 200 * count, f"no {regime} column in its colour"


def test_regime_comparison_rejects_inconsistent_models(tmp_path: Path) -> None:
    images, boxes, cams = _scene(1)
    regimes, cams_by_model, preds = _models(1, cams)
    with pytest.raises(ValueError, match="preds_by_model lacks"):
        plot_regime_comparison(
            images, boxes, NAMES[:1], cams_by_model, {}, tmp_path / "x.png", model_regimes=regimes
        )
    with pytest.raises(ValueError, match="unknown regime"):
        plot_regime_comparison(
            images,
            boxes,
            NAMES[:1],
            cams_by_model,
            preds,
            tmp_path / "x.png",
            model_regimes=dict.fromkeys(regimes, "linear"),
        )


# ----------------------------------------------------------- CAM measures


def test_cam_measures_with_nan_energies(tmp_path: Path) -> None:
    frames = []
    for model, regime in [
        ("scratch best", "scratch"),
        ("frozen best", "frozen"),
        ("finetune best", "finetune"),
    ]:
        frame = _measures(6).assign(model=model, regime=regime, center_hit=True)
        frames.append(frame)
    frames[1]["energy_inside"] = np.nan  # every CAM of one model all-zero
    pixels = _read_png(plot_cam_measures(pd.concat(frames), tmp_path / "measures.png"))
    for regime, color in REGIME_COLORS.items():
        assert _pixels_of(pixels, color) > 500, f"no {regime} bar in its colour"


def test_cam_measures_reject_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        plot_cam_measures(_measures(3), tmp_path / "x.png")


def test_cam_measures_show_each_regime_beside_the_untrained_network_and_chance(
    tmp_path: Path,
) -> None:
    frames = [
        _measures(6).assign(model=model, regime=regime, center_hit=[True, False, False] * 2)
        for model, regime in [("frozen best", "frozen"), (RANDOM_INIT, RANDOM_INIT)]
    ]
    measures = pd.concat(frames, ignore_index=True)
    pixels = _read_png(plot_cam_measures(measures, tmp_path / "measures.png"))
    assert _pixels_of(pixels, REGIME_COLORS["frozen"]) > 500
    assert _pixels_of(pixels, BASELINE_COLOR) > 500, "no bar for the untrained network"
    energy, pointing, skipped = summarise_cam_measures(measures)
    assert list(energy["label"]) == ["frozen best", RANDOM_INIT, "uniform map"]
    assert list(pointing["label"]) == ["frozen best", RANDOM_INIT, "image centre"]
    uniform = mean_interval(frames[0]["box_area_share"].to_numpy())
    assert energy["value"].iloc[-1] == pytest.approx(uniform.value)
    below, above = energy["error"].iloc[-1]
    assert (below, above) == pytest.approx(
        (uniform.value - uniform.low, uniform.high - uniform.value)
    )
    centre = proportion_interval(np.array([True, False, False] * 2))
    assert pointing["value"].iloc[-1] == pytest.approx(1 / 3)
    assert pointing["error"].iloc[-1] == pytest.approx((1 / 3 - centre.low, centre.high - 1 / 3))
    assert skipped == 2  # each model's all-zero CAM


def test_regime_comparison_draws_the_untrained_network_as_its_own_grey_column(
    tmp_path: Path,
) -> None:
    images, boxes, cams = _scene(1)
    regimes, cams_by_model, preds = _models(1, cams)
    regimes[RANDOM_INIT] = RANDOM_INIT
    cams_by_model[RANDOM_INIT] = np.full_like(cams, 0.5)
    preds[RANDOM_INIT] = ([NAMES[0]], [0.2])
    path = plot_regime_comparison(
        images, boxes, NAMES[1:2], cams_by_model, preds, tmp_path / "c.png", model_regimes=regimes
    )
    assert _pixels_of(_read_png(path), BASELINE_COLOR) > 200
