"""The two stages of batch prediction, as Ray Data ``map_batches`` functions.

:func:`decode_batch` turns encoded images into model inputs, and a file that
cannot be decoded into a row with an ``error``; :class:`BatchClassifier` (an
actor pool) loads the model once per actor and answers each batch with its
top-5 classes. With GPU actors, decoding runs in CPU tasks beside them; CPU
actors reserve what decoding tasks would, so Ray Data fuses the two stages and
each actor decodes its own batches (no copy of the inputs through the object store).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image, UnidentifiedImageError

from cars.data.boxes import Box, clip_box, has_area
from cars.data.decoding import decode_input
from cars.data.readers import BBOX_FIELDS
from cars.data.transforms import create_eval_transform
from cars.learn.classifier import Classifier, load_classifier
from cars.learn.device import configure_device

TOP_K = 5

PREDICTION_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("pred_class", pa.string()),
        ("confidence", pa.float64()),
        ("top5_classes", pa.list_(pa.string())),
        ("top5_probs", pa.list_(pa.float64())),
        ("error", pa.string()),
    ]
)
LABEL_SCHEMA = pa.schema(
    [("label", pa.int64()), ("true_class", pa.string()), ("correct", pa.bool_())]
)


def usable_box(box: Sequence[int], width: int, height: int) -> Box | None:
    """The box clipped to a ``width`` x ``height`` image; None when nothing of it is left."""
    x1, y1, x2, y2 = (int(v) for v in box)
    inside = clip_box((x1, y1, x2, y2), width, height)
    return inside if has_area(inside) else None


def read_image_size(data: bytes) -> tuple[int, int]:
    """The width and height of encoded image bytes (the header only)."""
    with Image.open(io.BytesIO(data)) as opened:
        return opened.size


def classifier_input(classifier: Classifier) -> dict[str, Any]:
    """What the decoding tasks need to know of the model (plain values, cheap to ship)."""
    return {
        "data_config": dict(classifier.data_config),
        "bbox_crop": classifier.bbox_crop,
        "bbox_margin": classifier.bbox_margin,
    }


def decode_batch(batch: dict[str, np.ndarray], model_input: dict[str, Any]) -> dict[str, Any]:
    """Encoded images to uint8 inputs; an undecodable file keeps its row, with an error.

    The model's actors normalise them on their device (a quarter of the bytes of floats
    through Ray's object store).
    """
    transform = create_eval_transform(model_input["data_config"])
    size = int(model_input["data_config"]["input_size"][-1])
    count = len(batch["path"])
    inputs = np.zeros((count, 3, size, size), dtype=np.uint8)
    errors: list[str | None] = [None] * count
    has_boxes = all(name in batch for name in BBOX_FIELDS)
    for i in range(count):
        box = [batch[name][i] for name in BBOX_FIELDS] if has_boxes else None
        try:
            data = batch["bytes"][i]
            if box is not None and model_input["bbox_crop"]:
                box = usable_box(box, *read_image_size(data))
            else:
                box = None
            inputs[i] = decode_input(data, transform, box, model_input["bbox_margin"]).numpy()
        except UnidentifiedImageError:  # its message names a buffer's address, not the file
            errors[i] = "cannot decode the image: not an image format Pillow reads"
        except Exception as err:  # any file Pillow cannot read is that row's error, not the job's
            errors[i] = f"cannot decode the image: {type(err).__name__}: {err}"
    out: dict[str, Any] = {
        "path": batch["path"],
        "image": inputs,
        "error": np.array(errors, dtype=object),
    }
    if "label" in batch:
        out["label"] = batch["label"].astype(np.int64)
    return out


class BatchClassifier:
    """A Ray Data actor: the model, loaded once, answering batches of decoded images.

    Args:
        model: the model folder or checkpoint (see :func:`cars.learn.classifier.load_classifier`).
        use_gpu: run on the GPU Ray assigned this actor.
        threads: torch threads on a CPU (the CPUs the actor reserved).
        true_class_names: the data set's class names, when rows carry labels.
    """

    def __init__(
        self,
        model: str,
        *,
        use_gpu: bool,
        threads: int,
        true_class_names: Sequence[str] | None = None,
    ) -> None:
        # Imported here: decoding tasks import this module and pick no device.
        from cars.cluster.devices import choose_device

        self.device = configure_device(choose_device(use_gpu).device, threads)
        self.classifier = load_classifier(model).to(self.device)
        self.true_class_names = None if true_class_names is None else list(true_class_names)

    @torch.inference_mode()
    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Top-5 classes and probabilities of each decoded row; error rows pass through."""
        # A block whose rows all decoded holds a null column, which reaches here as NaNs.
        errors = [e if isinstance(e, str) else None for e in batch["error"]]
        ok = np.array([e is None for e in errors], dtype=bool)
        count, names = len(errors), self.classifier.class_names
        k = min(TOP_K, len(names))
        top_classes: list[list[str] | None] = [None] * count
        top_probs: list[list[float] | None] = [None] * count
        if ok.any():
            pixels = torch.from_numpy(np.ascontiguousarray(batch["image"][ok]))
            probs = self.classifier.predict_probabilities(pixels, self.device)
            values, indices = probs.topk(k, dim=1)
            rows = np.flatnonzero(ok)
            for row, v, c in zip(rows, values.cpu().tolist(), indices.cpu().tolist(), strict=True):
                top_classes[row] = [names[j] for j in c]
                top_probs[row] = [float(p) for p in v]
        columns: dict[str, list[Any]] = {
            "path": [str(p) for p in batch["path"]],
            "pred_class": [None if t is None else t[0] for t in top_classes],
            "confidence": [None if t is None else t[0] for t in top_probs],
            "top5_classes": top_classes,
            "top5_probs": top_probs,
            "error": errors,
        }
        schema = PREDICTION_SCHEMA
        if self.true_class_names is not None and "label" in batch:
            labels = [int(v) for v in batch["label"]]
            truth = [self.true_class_names[v] if v >= 0 else None for v in labels]
            columns["label"] = labels
            columns["true_class"] = truth
            columns["correct"] = [
                None if t is None or p is None else p == t
                for t, p in zip(truth, columns["pred_class"], strict=True)
            ]
            schema = pa.unify_schemas([PREDICTION_SCHEMA, LABEL_SCHEMA])
        return pa.table(columns, schema=schema)
