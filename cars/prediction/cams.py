"""Grad-CAM overlays of a few predicted images, drawn as the report draws its own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import ray.data
import torch

from cars.data.boxes import has_area
from cars.data.decoding import decode_input
from cars.data.readers import BBOX_FIELDS
from cars.data.transforms import EvalTransform, map_box_to_eval_input
from cars.figures import plot_gradcam_grid
from cars.figures.panels import UNKNOWN_CLASS
from cars.learn.classifier import Classifier
from cars.learn.gradcam import compute_cams
from cars.prediction.stages import read_image_size, usable_box

GRADCAM_FILE = "gradcam.png"
_NO_BOX = (np.nan, np.nan, np.nan, np.nan)


def supports_gradcam(classifier: Classifier) -> bool:
    """Whether the report's Grad-CAM layer (``act4`` of ``legacy_xception``) exists here."""
    return isinstance(getattr(classifier.model, "act4", None), torch.nn.Module)


def write_prediction_cams(
    classifier: Classifier,
    rows: ray.data.Dataset,
    count: int,
    out: Path,
    true_class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Grad-CAMs of the first ``count`` decodable images of ``rows``, in one grid at ``out``.

    Returns:
        The images drawn: path, true class, predicted class and its probability.
    """
    transform = classifier.create_transform()
    paths, boxes, inputs, truths = [], [], [], []
    for row in rows.iter_rows():
        box = [int(row[name]) for name in BBOX_FIELDS] if BBOX_FIELDS[0] in row else None
        try:
            size = read_image_size(row["bytes"])
            crop = usable_box(box, *size) if box is not None and classifier.bbox_crop else None
            pixels = decode_input(row["bytes"], transform, crop, classifier.bbox_margin)
        except Exception:  # an unreadable file has its error row; draw the next image
            continue
        boxes.append(_input_box(classifier, transform, box, size))
        inputs.append(pixels)
        paths.append(str(row["path"]))
        label = int(row.get("label", -1))
        truths.append(true_class_names[label] if true_class_names and label >= 0 else UNKNOWN_CLASS)
        if len(paths) == count:
            break
    if not paths:
        raise ValueError("no decodable image to draw Grad-CAMs of")
    batch = torch.stack(inputs)
    result = compute_cams(classifier.model, batch)
    names = [classifier.class_names[int(t)] for t in result.targets]
    confidences = result.probabilities[np.arange(len(paths)), result.targets]
    plot_gradcam_grid(
        batch.permute(0, 2, 3, 1).numpy(),
        result.cams,
        np.array(boxes, dtype=np.float64),
        truths,
        names,
        confidences.tolist(),
        out / GRADCAM_FILE,
        title="Grad-CAM of the predicted class (the car's box in white, where known)",
    )
    return pd.DataFrame(
        {"path": paths, "true_class": truths, "pred_class": names, "confidence": confidences}
    )


def _input_box(
    classifier: Classifier,
    transform: EvalTransform,
    box: list[int] | None,
    size: tuple[int, int],
) -> tuple[float, float, float, float]:
    """The car's box in the model input's pixels; NaN (drawn as nothing) when unknown."""
    if box is None or not has_area((box[0], box[1], box[2], box[3])):
        return _NO_BOX
    return map_box_to_eval_input(
        (box[0], box[1], box[2], box[3]),
        *size,
        classifier.image_size,
        bbox_crop=classifier.bbox_crop,
        bbox_margin=classifier.bbox_margin,
        transform=transform,
    )
