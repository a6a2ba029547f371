"""Grad-CAM figures: a grid of test images for one model, and models side by side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cars.figures.panels import (
    add_cam_colorbar,
    check_boxes,
    check_cams,
    check_images,
    check_length,
    check_measures,
    draw_image,
    measure_caption,
    prediction_caption,
)
from cars.figures.style import add_title, regime_color, regime_label, save_figure, shorten_name

_COLORBAR_HEIGHT = 0.75


def plot_gradcam_grid(  # noqa: PLR0917 - positional order is the report's contract
    images: Sequence[np.ndarray] | np.ndarray,
    cams: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    true_names: Sequence[str],
    pred_names: Sequence[str],
    confidences: Sequence[float],
    path: str | Path,
    *,
    title: str,
    measures: pd.DataFrame | None = None,
    columns: int = 3,
) -> Path:
    """One model's Grad-CAMs on N images: each image with its box, beside its CAM overlay.

    Args:
        images: N x H x W x 3 uint8 at the model input size (the CAMs' geometry).
        cams: N x H x W in [0, 1]; boxes: N x (x1, y1, x2, y2) in those pixels.
        confidences: the probability of each predicted class.
        measures: optional per-image ``energy_inside`` / ``pointing_hit`` (and
            ``box_area_share``) rows, as ``cars.learn.gradcam.measure_cams`` returns.
        columns: image pairs per row.
    """
    images = check_images(images)
    count = len(images)
    cams = check_cams(cams, images)
    boxes = check_boxes(boxes, count)
    true_names = check_length(true_names, count, "true_names")
    pred_names = check_length(pred_names, count, "pred_names")
    confidences = check_length(confidences, count, "confidences")
    measures = check_measures(measures, count)

    ncols = max(1, min(columns, count))
    nrows = math.ceil(count / ncols)
    cell_height = 3.6 if measures is not None else 3.3
    fig = Figure(
        figsize=(4.9 * ncols, cell_height * nrows + _COLORBAR_HEIGHT + 0.6), layout="constrained"
    )
    body, footer = fig.subfigures(2, 1, height_ratios=[cell_height * nrows, _COLORBAR_HEIGHT])
    cells = body.subfigures(nrows, ncols, squeeze=False).ravel()
    for index, cell in enumerate(cells):
        if index >= count:
            continue
        left, right = cell.subplots(1, 2)
        draw_image(left, images[index], boxes[index])
        draw_image(right, images[index], boxes[index], cams[index])
        left.set_title("image", fontsize=8, color="dimgray")
        right.set_title("Grad-CAM", fontsize=8, color="dimgray")
        text, color = prediction_caption(true_names[index], pred_names[index], confidences[index])
        cell.suptitle(f"true: {shorten_name(true_names[index])}\n{text}", fontsize=9, color=color)
        right.set_xlabel(measure_caption(measures, index), fontsize=8)
    add_cam_colorbar(footer)
    add_title(fig, title)
    return save_figure(fig, path)


def _check_models(
    cams_by_model: Mapping[str, np.ndarray],
    preds_by_model: Mapping[str, tuple[Sequence[str], Sequence[float]]],
    model_regimes: Mapping[str, str],
) -> list[str]:
    models = list(cams_by_model)
    if not models:
        raise ValueError("cams_by_model is empty: give at least one model's CAMs")
    for name, mapping in (("preds_by_model", preds_by_model), ("model_regimes", model_regimes)):
        missing = [m for m in models if m not in mapping]
        if missing:
            raise ValueError(f"{name} lacks models {missing}; give an entry for every model")
    for model in models:
        regime_color(model_regimes[model])
    return models


def plot_regime_comparison(  # noqa: PLR0917 - positional order is the report's contract
    images: Sequence[np.ndarray] | np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    true_names: Sequence[str],
    cams_by_model: Mapping[str, np.ndarray],
    preds_by_model: Mapping[str, tuple[Sequence[str], Sequence[float]]],
    path: str | Path,
    *,
    model_regimes: Mapping[str, str],
    title: str | None = None,
    measures_by_model: Mapping[str, pd.DataFrame] | None = None,
) -> Path:
    """The same images (rows) across models (columns): the image with its box, then each CAM.

    Args:
        cams_by_model: model name -> N x H x W CAMs, in column order.
        preds_by_model: model name -> (predicted class names, confidences).
        model_regimes: model name -> regime (or ``cars.config.RANDOM_INIT`` for the
            untrained baseline), which colours its column.
        measures_by_model: optional model name -> ``measure_cams`` rows.
    """
    images = check_images(images)
    count = len(images)
    boxes = check_boxes(boxes, count)
    true_names = check_length(true_names, count, "true_names")
    models = _check_models(cams_by_model, preds_by_model, model_regimes)
    cams = {m: check_cams(cams_by_model[m], images, f"cams_by_model[{m!r}]") for m in models}
    preds = {}
    for model in models:
        names, confidences = preds_by_model[model]
        preds[model] = (
            check_length(names, count, f"predicted names of {model!r}"),
            check_length(confidences, count, f"confidences of {model!r}"),
        )
    measures = {m: check_measures((measures_by_model or {}).get(m), count) for m in models}

    cell = 2.7
    fig = Figure(
        figsize=(cell * (len(models) + 1) + 0.3, (cell + 0.75) * count + 1.6), layout="constrained"
    )
    body, footer = fig.subfigures(2, 1, height_ratios=[(cell + 0.75) * count, _COLORBAR_HEIGHT])
    axes = body.subplots(count, len(models) + 1, squeeze=False)
    for row in range(count):
        image_ax = axes[row, 0]
        draw_image(image_ax, images[row], boxes[row])
        image_ax.set_xlabel(f"true: {shorten_name(true_names[row])}", fontsize=8.5)
        for spine in image_ax.spines.values():
            spine.set_visible(False)
        for column, model in enumerate(models, start=1):
            ax = axes[row, column]
            draw_image(ax, images[row], boxes[row], cams[model][row])
            names, confidences = preds[model]
            text, color = prediction_caption(true_names[row], names[row], confidences[row])
            caption = measure_caption(measures[model], row)
            ax.set_xlabel(text + (f"\n{caption}" if caption else ""), fontsize=7.5, color=color)
            for spine in ax.spines.values():
                spine.set(edgecolor=regime_color(model_regimes[model]), linewidth=2.5)
    axes[0, 0].set_title("image and true box", fontsize=10)
    for column, model in enumerate(models, start=1):
        regime = model_regimes[model]
        axes[0, column].set_title(
            f"{shorten_name(model, 22)}\n({regime_label(regime)})",
            fontsize=10,
            color=regime_color(regime),
            weight="bold",
        )
    add_cam_colorbar(footer)
    add_title(fig, title or "Grad-CAM of each model's prediction, by regime")
    return save_figure(fig, path)
