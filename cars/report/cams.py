"""The report's Grad-CAM section: the same test images through every chosen model and
the random baseline, drawn, and measured against the cars' bounding boxes.

An image whose box is unknown (see :data:`cars.data.BBOX_CONVENTION`) is drawn
without a box and not measured: its measures are null, never computed on a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cars.data import CarsDataset
from cars.figures import plot_cam_measures, plot_gradcam_grid, plot_regime_comparison
from cars.learn.gradcam import (
    MEASURE_COLUMNS,
    POINTING_TOLERANCE,
    CamResult,
    compute_cams,
    measure_cams,
)
from cars.report.cam_models import CamModel
from cars.report.cam_view import PHOTOS, CamView

# The pointing game's 15 px tolerance is meant for inputs of about 224-299 px;
# it scales with the input so that a 64 px demo is judged alike.
TOLERANCE_REFERENCE_SIZE = 299


def pointing_tolerance(image_size: int) -> float:
    """The pointing-game tolerance in input pixels for an input of ``image_size``."""
    return POINTING_TOLERANCE * image_size / TOLERANCE_REFERENCE_SIZE


def select_images(predictions: np.ndarray, labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Test images for the figures: half the best model got right, half wrong, where possible.

    Images whose label is unknown are used only when no labelled image exists.
    """
    rng = np.random.default_rng(seed)
    known = np.flatnonzero(labels >= 0)
    if known.size == 0:
        pool = np.arange(len(labels))
        return np.sort(rng.choice(pool, size=min(count, pool.size), replace=False))
    right = known[predictions[known] == labels[known]]
    wrong = known[predictions[known] != labels[known]]
    take_wrong = min(wrong.size, count // 2)
    take_right = min(right.size, count - take_wrong)
    take_wrong = min(wrong.size, count - take_right)
    chosen = [
        np.sort(rng.choice(right, size=take_right, replace=False)),
        np.sort(rng.choice(wrong, size=take_wrong, replace=False)),
    ]
    return np.concatenate(chosen).astype(np.int64)


def add_measured_images(drawn: np.ndarray, size: int, count: int, seed: int) -> np.ndarray:
    """The images to measure: the ``drawn`` ones and others of the ``size`` test images
    at random, ``count`` in all (or every image, if fewer), in test-split order.

    Drawn images are half right, half wrong; the others are a plain sample of the
    split, so that the measures are not only those of hand-balanced images.
    """
    rest = np.setdiff1d(np.arange(size), drawn)
    extra = max(0, min(count, size) - len(drawn))
    chosen = np.random.default_rng([seed, 1]).choice(rest, size=extra, replace=False)
    return np.sort(np.concatenate([drawn, chosen]).astype(np.int64))


def _class_name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if label >= 0 else "unknown"


@dataclass(frozen=True)
class CamImages:
    """The test images every model explains, as the view shows them, with their boxes."""

    indices: np.ndarray
    inputs: torch.Tensor
    """N x 3 x H x W uint8, the models' inputs."""
    boxes: np.ndarray
    """N x 4 in input pixels; NaNs where the box is unknown."""
    labels: np.ndarray
    true_names: list[str]
    source_files: list[str]

    @property
    def known(self) -> np.ndarray:
        """Which images have a box to measure against."""
        return np.isfinite(self.boxes).all(axis=1)

    @property
    def pictures(self) -> np.ndarray:
        """The inputs as N x H x W x 3 pictures."""
        return self.inputs.permute(0, 2, 3, 1).numpy()

    def subset(self, keep: np.ndarray) -> CamImages:
        """The images where ``keep`` is true."""
        return CamImages(
            indices=self.indices[keep],
            inputs=self.inputs[torch.from_numpy(keep)],
            boxes=self.boxes[keep],
            labels=self.labels[keep],
            true_names=[n for n, k in zip(self.true_names, keep, strict=True) if k],
            source_files=[f for f, k in zip(self.source_files, keep, strict=True) if k],
        )


def read_cam_images(
    dataset: CarsDataset, indices: np.ndarray, view: CamView, class_names: Sequence[str]
) -> CamImages:
    """The images ``indices`` of ``dataset`` (built by ``view``) and their boxes."""
    boxes = [view.input_box(dataset, int(i)) for i in indices]
    labels = dataset.labels[indices]
    return CamImages(
        indices=indices,
        inputs=torch.stack([dataset[int(i)][0] for i in indices]),
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        labels=labels,
        true_names=[_class_name(class_names, int(label)) for label in labels],
        source_files=[dataset.source_files[int(i)] for i in indices],
    )


@dataclass(frozen=True)
class ModelCams:
    """One model's CAMs of the images, its answers, and the CAMs' measures."""

    model: CamModel
    result: CamResult
    measures: pd.DataFrame
    pred_names: list[str]

    def subset(self, keep: np.ndarray) -> ModelCams:
        """The CAMs, answers and measures of the images where ``keep`` is true."""
        result = self.result
        return ModelCams(
            model=self.model,
            result=CamResult(
                cams=result.cams[keep],
                probabilities=result.probabilities[keep],
                targets=result.targets[keep],
                map_size=result.map_size,
            ),
            measures=self.measures[keep].reset_index(drop=True),
            pred_names=[n for n, k in zip(self.pred_names, keep, strict=True) if k],
        )


def explain(
    cam_model: CamModel, images: CamImages, tolerance: float, class_names: Sequence[str]
) -> ModelCams:
    """Compute and measure ``cam_model``'s CAMs of ``images``.

    Each CAM explains the image's true class, as the pointing game does, so that
    it shows where the model finds the car's class even where it answers wrong;
    an image of unknown label gets the CAM of the predicted class.
    """
    targets = [int(label) if label >= 0 else None for label in images.labels]
    result = compute_cams(cam_model.model, images.inputs, targets=targets)
    return ModelCams(
        model=cam_model,
        result=result,
        measures=_measure_known(result.cams, images.boxes, images.known, tolerance),
        pred_names=[_class_name(class_names, int(p)) for p in result.predictions],
    )


def _measure_known(
    cams: np.ndarray, boxes: np.ndarray, known: np.ndarray, tolerance: float
) -> pd.DataFrame:
    """The measures of the CAMs whose box is known; nulls for the others (``box_known``)."""
    frame = pd.DataFrame(index=range(len(cams)), columns=list(MEASURE_COLUMNS), dtype=float)
    frame = frame.astype({"pointing_hit": "boolean", "center_hit": "boolean"})
    if known.any():
        measured = measure_cams(cams[known], boxes[known], tolerance=tolerance)
        for column in MEASURE_COLUMNS:
            frame.loc[known, column] = measured[column].to_numpy()
    return frame.assign(box_known=known)


def _rows(
    explained: ModelCams, images: CamImages, drawn: np.ndarray, view: CamView, tolerance: float
) -> pd.DataFrame:
    """``explained``'s rows of ``gradcam.parquet``: one per image."""
    model, result = explained.model, explained.result
    return explained.measures.assign(
        model=model.name,
        trial_id=model.trial_id,
        regime=model.regime,
        baseline=model.baseline,
        best_overall=model.best_overall,
        test_index=images.indices,
        drawn=drawn,
        source_file=images.source_files,
        true_label=images.labels,
        true_class=images.true_names,
        pred_label=result.predictions,
        pred_class=explained.pred_names,
        confidence=result.confidences,
        correct=(result.predictions == images.labels) & (images.labels >= 0),
        cam_label=result.targets,
        box_x1=images.boxes[:, 0],
        box_y1=images.boxes[:, 1],
        box_x2=images.boxes[:, 2],
        box_y2=images.boxes[:, 3],
        tolerance_px=tolerance,
        view=view.kind,
        input_size=view.image_size,
        map_height=result.map_size[0],
        map_width=result.map_size[1],
    )


def _what(view: CamView) -> str:
    """What the figures show, for their titles."""
    return f"test {'photos' if view.kind == PHOTOS else 'inputs'} ({view.image_size} px)"


def _draw_grid(explained: ModelCams, images: CamImages, view: CamView, out: Path) -> None:
    """One model's grid of its CAMs: ``<model>.png``."""
    model = explained.model
    who = f"{model.name} (untrained: random weights)" if model.baseline else model.name
    plot_gradcam_grid(
        images.pictures,
        explained.result.cams,
        images.boxes,
        images.true_names,
        explained.pred_names,
        explained.result.confidences.tolist(),
        out / f"{model.name}.png",
        title=f"Grad-CAM of {who} for the true class, on {_what(view)} (true box in white)",
        measures=explained.measures,
    )


def _draw_comparison(
    explained: Sequence[ModelCams], images: CamImages, view: CamView, out: Path
) -> None:
    """Every model's CAMs of the same images side by side: ``regimes.png``."""
    plot_regime_comparison(
        images.pictures,
        images.boxes,
        images.true_names,
        {e.model.name: e.result.cams for e in explained},
        {e.model.name: (e.pred_names, e.result.confidences.tolist()) for e in explained},
        out / "regimes.png",
        model_regimes={e.model.name: e.model.regime for e in explained},
        title=(
            f"The same {_what(view)} through each regime's best model and an untrained one: "
            "Grad-CAM of the true class"
        ),
        measures_by_model={e.model.name: e.measures for e in explained},
    )


def write_gradcam(
    models: Sequence[CamModel],
    dataset: CarsDataset,
    *,
    indices: np.ndarray,
    view: CamView,
    class_names: Sequence[str],
    out: Path,
    drawn: np.ndarray | None = None,
) -> pd.DataFrame:
    """Measure the CAMs of ``models`` on the test images ``indices``; draw those of ``drawn``.

    ``dataset`` is the test split as ``view`` shows it; ``drawn`` (by default
    every image) are among ``indices``. Writes one grid per model, a figure
    comparing the models on the same images, and a chart of the measures (of
    the images whose box is known) into ``out``.

    Returns:
        One row per image and model (``gradcam.parquet``).
    """
    images = read_cam_images(dataset, indices, view, class_names)
    keep = np.ones(len(indices), bool) if drawn is None else np.isin(indices, drawn)
    tolerance = pointing_tolerance(view.image_size)
    explained = [explain(model, images, tolerance, class_names) for model in models]
    shown = [each.subset(keep) for each in explained]
    for each in shown:
        _draw_grid(each, images.subset(keep), view, out)
    _draw_comparison(shown, images.subset(keep), view, out)
    table = pd.concat(
        [_rows(e, images, keep, view, tolerance) for e in explained], ignore_index=True
    )
    if images.known.any():
        plot_cam_measures(table[table["box_known"]], out / "measures.png", tolerance=tolerance)
    return table
