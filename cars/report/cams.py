"""The report's Grad-CAM section: the same test images through every chosen model,
drawn, and measured against the cars' bounding boxes.

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

from cars.config import TrainConfig
from cars.data import CarsDataset, map_box_to_eval_input
from cars.figures import plot_cam_measures, plot_gradcam_grid, plot_regime_comparison
from cars.learn.gradcam import MEASURE_COLUMNS, POINTING_TOLERANCE, compute_cams, measure_cams

# The pointing game's 15 px tolerance is meant for inputs of about 224-299 px;
# it scales with the input so that a 64 px demo is judged alike.
TOLERANCE_REFERENCE_SIZE = 299


@dataclass(frozen=True)
class CamModel:
    """One model of the Grad-CAM figures: a regime's best trial."""

    name: str
    trial_id: str
    regime: str
    best_overall: bool
    model: torch.nn.Module


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


def _display_images(inputs: torch.Tensor) -> np.ndarray:
    """The uint8 model inputs (N x 3 x H x W) as H x W x 3 pictures."""
    return inputs.permute(0, 2, 3, 1).numpy()


def _class_name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if label >= 0 else "unknown"


def write_gradcam(
    models: Sequence[CamModel],
    dataset: CarsDataset,
    *,
    indices: np.ndarray,
    config: TrainConfig,
    class_names: Sequence[str],
    out: Path,
) -> pd.DataFrame:
    """Draw and measure the CAMs of ``models`` on the test images ``indices``.

    Writes one grid per model, a figure comparing the models on the same
    images, and a bar chart of the measures (of the images whose box is known)
    into ``out``.

    Returns:
        One row per image and model (``gradcam.parquet``).
    """
    inputs = torch.stack([dataset[int(i)][0] for i in indices])
    images = _display_images(inputs)
    boxes = np.array(
        [_input_box(dataset, int(i), config) for i in indices], dtype=np.float64
    ).reshape(-1, 4)
    known = np.isfinite(boxes).all(axis=1)
    labels = dataset.labels[indices]
    true_names = [_class_name(class_names, int(label)) for label in labels]
    tolerance = pointing_tolerance(config.image_size)
    frames, cams_by_model, preds_by_model, measures_by_model = [], {}, {}, {}
    for cam_model in models:
        result = compute_cams(cam_model.model, inputs)
        measures = _measure_known(result.cams, boxes, known, tolerance)
        pred_names = [_class_name(class_names, int(p)) for p in result.predictions]
        plot_gradcam_grid(
            images,
            result.cams,
            boxes,
            true_names,
            pred_names,
            result.confidences.tolist(),
            out / f"{cam_model.name}.png",
            title=f"Grad-CAM of {cam_model.name} on test images (true box in white)",
            measures=measures,
        )
        cams_by_model[cam_model.name] = result.cams
        preds_by_model[cam_model.name] = (pred_names, result.confidences.tolist())
        measures_by_model[cam_model.name] = measures
        frames.append(
            measures.assign(
                model=cam_model.name,
                trial_id=cam_model.trial_id,
                regime=cam_model.regime,
                best_overall=cam_model.best_overall,
                test_index=indices,
                source_file=[dataset.source_files[int(i)] for i in indices],
                true_label=labels,
                true_class=true_names,
                pred_label=result.predictions,
                pred_class=pred_names,
                confidence=result.confidences,
                correct=(result.predictions == labels) & (labels >= 0),
                box_x1=boxes[:, 0],
                box_y1=boxes[:, 1],
                box_x2=boxes[:, 2],
                box_y2=boxes[:, 3],
                tolerance_px=tolerance,
            )
        )
    plot_regime_comparison(
        images,
        boxes,
        true_names,
        cams_by_model,
        preds_by_model,
        out / "regimes.png",
        model_regimes={m.name: m.regime for m in models},
        title="The same test images through each regime's best model",
        measures_by_model=measures_by_model,
    )
    table = pd.concat(frames, ignore_index=True)
    if known.any():
        plot_cam_measures(table[table["box_known"]], out / "measures.png", tolerance=tolerance)
    return table


def _input_box(dataset: CarsDataset, index: int, config: TrainConfig) -> tuple[float, ...]:
    """An image's box in the model input's pixels; NaNs when the box is unknown."""
    box = dataset.box(index)
    if box is None:
        return (np.nan,) * 4
    width, height = (int(v) for v in dataset.sizes[index])
    return map_box_to_eval_input(
        box,
        width,
        height,
        config.image_size,
        bbox_crop=config.bbox_crop,
        bbox_margin=config.bbox_margin,
        transform=dataset.transform,
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
