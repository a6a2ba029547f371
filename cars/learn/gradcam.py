"""Grad-CAM maps of a classifier, and how well they sit on the car's bounding box.

Two measures judge a CAM against a box ``(x1, y1, x2, y2)`` given in the CAM's
own pixel coordinates (the model input's, since CAMs are computed at the input
resolution); ``x2`` and ``y2`` are exclusive, so pixel column ``i`` spans
``[i, i + 1)``:

- **energy inside the box**: the share of the CAM's sum that falls in the box.
  Fractional box edges count partial pixels by the fraction of the pixel the
  box covers, so a uniform map scores exactly the box's area share, the
  baseline every CAM is compared with (``energy_ratio`` > 1: the CAM
  concentrates on the car).
- **the pointing game** (Zhang et al., 2016): whether the CAM's maximum lies
  within ``tolerance`` pixels of the box; an upsampled CAM's maximum is a
  plateau, and the game takes its centre.

Boxes reaching past the map are clipped to it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy import ndimage
from timm.utils import unwrap_model
from torch import nn

from cars.data.normalize import create_input_normalizer

Box = Sequence[float]

POINTING_TOLERANCE = 15
PEAK_RELATIVE_TOLERANCE = 1e-6
MEASURE_COLUMNS = ("energy_inside", "box_area_share", "energy_ratio", "pointing_hit", "center_hit")


def _check_cam(cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(
            f"a CAM must be a non-empty 2-D (height x width) array, got shape {cam.shape}; "
            "pass one map of the batch, e.g. cams[i]"
        )
    if not np.isfinite(cam).all():
        raise ValueError("the CAM holds NaN or infinite values; measure only finite maps")
    if cam.min() < 0:
        raise ValueError(
            f"the CAM has negative values (min {cam.min():.3g}); pass a non-negative map, "
            "e.g. after a ReLU, as GradCAM returns it"
        )
    return cam


def _clip_box(shape: tuple[int, int], box: Box) -> tuple[float, float, float, float]:
    """Validate a box and clip it to a map of ``shape`` (height, width)."""
    values = np.asarray(box, dtype=np.float64).ravel()
    if values.size != 4 or not np.isfinite(values).all():
        raise ValueError(f"a box is four finite numbers (x1, y1, x2, y2), got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in values)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(
            f"degenerate box {tuple(values)}: x2 must exceed x1 and y2 exceed y1 "
            "(boxes are (x1, y1, x2, y2) with x2 and y2 exclusive)"
        )
    height, width = shape
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise ValueError(
            f"box {tuple(values)} lies entirely outside the {width}x{height} map; boxes must be "
            "in the map's pixel coordinates (scale them to the model input first)"
        )
    return clipped


def _coverage(start: float, stop: float, size: int) -> np.ndarray:
    """How much of each pixel ``[i, i + 1)`` along one axis the interval covers."""
    edges = np.arange(size, dtype=np.float64)
    return np.clip(np.minimum(stop, edges + 1) - np.maximum(start, edges), 0.0, 1.0)


def box_area_share(shape: tuple[int, int], box: Box) -> float:
    """The box's share of a ``shape`` (height, width) map's area, after clipping to it.

    This is what a uniform map scores in :func:`energy_inside_box`.
    """
    height, width = (int(s) for s in shape)
    if height <= 0 or width <= 0:
        raise ValueError(f"shape must be a positive (height, width), got {shape!r}")
    x1, y1, x2, y2 = _clip_box((height, width), box)
    return (x2 - x1) * (y2 - y1) / (height * width)


def energy_inside_box(cam: np.ndarray, box: Box) -> float:
    """The share of the CAM's total energy (sum of values) inside the box.

    Pixels cut by a fractional box edge count by the fraction covered. An
    all-zero CAM has no energy to place and scores NaN (averages should skip
    it and say how many were skipped).
    """
    cam = _check_cam(cam)
    x1, y1, x2, y2 = _clip_box(cam.shape, box)
    total = cam.sum()
    if total == 0:
        return math.nan
    rows = _coverage(y1, y2, cam.shape[0])
    cols = _coverage(x1, x2, cam.shape[1])
    return float(rows @ cam @ cols / total)


def _check_tolerance(tolerance: float) -> None:
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number of pixels >= 0, got {tolerance!r}")


def _distance_to_box(x: np.ndarray, y: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    x1, y1, x2, y2 = box
    dx = np.maximum.reduce([x1 - x, np.zeros_like(x), x - x2])
    dy = np.maximum.reduce([y1 - y, np.zeros_like(y), y - y2])
    return np.hypot(dx, dy)


def _peak_point(cam: np.ndarray) -> tuple[float, float] | None:
    """Where a CAM points: the centroid (x, y) of its largest region of maximal pixels.

    CAMs are upsampled from a coarse grid (2 x 2 cells for a 64 px input, 10 x 10
    at 299 px), so their maximum is a plateau rather than a pixel; its centroid
    is the centre of the coarse cell that scored highest. Values within a
    millionth of the maximum count as maximal. Of equally large separate
    plateaus the first in reading order wins, as ``argmax`` would choose. An
    all-zero map points nowhere (None).
    """
    peak = cam.max()
    if peak <= 0:
        return None
    labels, count = ndimage.label(cam >= peak * (1 - PEAK_RELATIVE_TOLERANCE))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    rows, cols = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return float(cols.mean()) + 0.5, float(rows.mean()) + 0.5


def pointing_game_hit(cam: np.ndarray, box: Box, tolerance: float = POINTING_TOLERANCE) -> bool:
    """Whether the CAM's maximum lies within ``tolerance`` pixels of the box.

    Distances are in the CAM's pixels (the model input's) from the point to
    the box, so the box grows by ``tolerance`` on every side with rounded
    corners, as in the pointing game's 15-pixel rule. The point is the centre
    of the CAM's maximal plateau (a pixel's centre when the maximum is a single
    pixel); a flat map points at the image centre, and an all-zero map misses.
    """
    _check_tolerance(tolerance)
    cam = _check_cam(cam)
    clipped = _clip_box(cam.shape, box)
    point = _peak_point(cam)
    if point is None:
        return False
    distance = _distance_to_box(np.array([point[0]]), np.array([point[1]]), clipped)
    return bool(distance[0] <= tolerance)


def center_hit(shape: tuple[int, int], box: Box, tolerance: float = POINTING_TOLERANCE) -> bool:
    """The pointing game's centre baseline: whether the map's centre is within the box's reach."""
    _check_tolerance(tolerance)
    height, width = shape
    clipped = _clip_box((height, width), box)
    distance = _distance_to_box(np.array([width / 2]), np.array([height / 2]), clipped)
    return bool(distance[0] <= tolerance)


def measure_cams(
    cams: np.ndarray, boxes: np.ndarray | Sequence[Box], tolerance: float = POINTING_TOLERANCE
) -> pd.DataFrame:
    """Measure N CAMs against their boxes: one row per CAM, in order.

    Columns: ``energy_inside`` (NaN for an all-zero CAM), ``box_area_share``
    (a uniform map's score), ``energy_ratio`` (their quotient; > 1 means the
    CAM concentrates on the box), ``pointing_hit`` and ``center_hit`` (the
    pointing game of the CAM and of a map peaked at the image centre).
    """
    cams = np.asarray(cams)
    boxes = np.asarray(boxes, dtype=np.float64)
    if cams.ndim != 3:
        raise ValueError(f"cams must be an N x H x W array, got shape {cams.shape}")
    if boxes.shape != (len(cams), 4):
        raise ValueError(
            f"boxes must be an N x 4 array of (x1, y1, x2, y2) matching {len(cams)} CAMs, "
            f"got shape {boxes.shape}"
        )
    rows = []
    for cam, box in zip(cams, boxes, strict=True):
        energy = energy_inside_box(cam, box)
        share = box_area_share(cam.shape, box)
        rows.append(
            {
                "energy_inside": energy,
                "box_area_share": share,
                "energy_ratio": energy / share,
                "pointing_hit": pointing_game_hit(cam, box, tolerance),
                "center_hit": center_hit(cam.shape, box, tolerance),
            }
        )
    frame = pd.DataFrame(rows, columns=list(MEASURE_COLUMNS))
    return frame.astype({"pointing_hit": bool, "center_hit": bool})


@dataclass(frozen=True)
class CamResult:
    """Grad-CAMs of a batch, and the model's answers from the same forward pass."""

    cams: np.ndarray
    """N x H x W float32 in [0, 1], at the input resolution."""
    probabilities: np.ndarray
    """N x classes float32, the softmax of the logits."""
    targets: np.ndarray
    """N int64: the class each CAM explains."""
    map_size: tuple[int, int]
    """(height, width) of the layer's map the CAMs were upsampled from."""

    @property
    def predictions(self) -> np.ndarray:
        """The predicted class of each image."""
        return self.probabilities.argmax(axis=1)

    @property
    def confidences(self) -> np.ndarray:
        """The probability of each image's predicted class."""
        return self.probabilities.max(axis=1)


@contextlib.contextmanager
def _gradients_from_layer(layer: nn.Module) -> Iterator[list[tuple[int, int]]]:
    """Let the backward pass start at ``layer``'s output; yields the map sizes seen.

    Grad-CAM needs the score's gradient at the layer only, so the layer's output
    becomes a leaf of the graph: backward runs through the head alone, not back
    through the backbone to the input (three times the cost of the forward
    pass). The hook must be registered before pytorch-grad-cam's, which then
    sees the leaf.
    """
    sizes: list[tuple[int, int]] = []

    def hook(_module: nn.Module, _args: object, output: torch.Tensor) -> torch.Tensor:
        sizes.append((int(output.shape[-2]), int(output.shape[-1])))
        return output.detach().requires_grad_(True)

    handle = layer.register_forward_hook(hook)
    try:
        yield sizes
    finally:
        handle.remove()


@contextlib.contextmanager
def _out_of_place(layer: nn.Module) -> Iterator[None]:
    # act4 is nn.ReLU(inplace=True). pytorch-grad-cam 1.5.7 takes gradients with
    # tensor hooks, which cope, but module backward hooks (older releases, other
    # tools hooked at the same time) fail on an in-place output: run it out of place.
    inplace = getattr(layer, "inplace", False)
    if inplace:
        layer.inplace = False
    try:
        yield
    finally:
        if inplace:
            layer.inplace = True


def _predicted_class(output: torch.Tensor) -> torch.Tensor:
    """A pytorch-grad-cam target: the score of the class the model predicts."""
    return output[..., int(output.argmax(-1))]


def _check_targets(
    targets: Sequence[int | None] | None, count: int, num_classes: int | None
) -> None:
    if targets is None:
        return
    if len(targets) != count:
        raise ValueError(f"got {len(targets)} targets for {count} images; give one class each")
    for target in targets:
        if target is None:
            continue
        in_range = num_classes is None or 0 <= int(target) < num_classes
        if int(target) != target or not in_range:
            raise ValueError(
                f"target class {target!r} is not a class index of this {num_classes}-class model"
            )


def compute_cams(
    model: nn.Module, inputs: torch.Tensor, targets: Sequence[int | None] | None = None
) -> CamResult:
    """Grad-CAMs on ``model.act4`` (Keras' ``block14_sepconv2_act``) for a batch.

    Args:
        model: a timm ``legacy_xception`` (or any classifier with an ``act4``
            layer), plain or wrapped in DDP; its train/eval mode, gradients and
            layers are left as they were.
        inputs: N x 3 x H x W uint8 pixels, normalised here with the model's
            own mean and std (:mod:`cars.data.normalize`), or floats already
            normalised as the model expects; moved to the model's device.
        targets: the class each CAM explains, None for an image's predicted class;
            default: the predicted classes.
    """
    net = unwrap_model(model)
    layer = getattr(net, "act4", None)
    if not isinstance(layer, nn.Module):
        raise ValueError(
            f"{type(net).__name__} has no act4 layer to take Grad-CAM from; "
            "pass a timm legacy_xception (block14_sepconv2_act is its act4)"
        )
    usable = inputs.is_floating_point() or inputs.dtype == torch.uint8
    if inputs.ndim != 4 or not usable or len(inputs) == 0:
        raise ValueError(
            "inputs must be a non-empty uint8 or float N x C x H x W batch, "
            f"got {inputs.dtype} {tuple(inputs.shape)}"
        )
    _check_targets(targets, len(inputs), getattr(net, "num_classes", None))
    device = next(net.parameters()).device
    was_training = net.training
    saved_grads = [(p, p.grad) for p in net.parameters()]
    cams = logits = None
    try:
        # The caller may be inside no_grad / inference_mode (an evaluation loop);
        # the CAM needs a backward pass regardless.
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            _out_of_place(layer),
            _gradients_from_layer(layer) as map_sizes,
        ):
            x = create_input_normalizer(net)(inputs.detach(), device)
            wanted = None
            if targets is not None:
                wanted = [
                    _predicted_class if t is None else ClassifierOutputTarget(int(t))
                    for t in targets
                ]
            # GradCAM puts the model in eval mode; its context manager removes its hooks.
            with GradCAM(model=net, target_layers=[layer]) as cam:
                cams = cam(input_tensor=x, targets=wanted)
                logits = cam.outputs.detach().float()
    finally:
        net.train(was_training)
        for parameter, grad in saved_grads:
            parameter.grad = grad
    if cams is None or logits is None:
        # GradCAM's __exit__ swallows IndexError (it prints instead of raising).
        raise ValueError("pytorch-grad-cam failed on an IndexError; check the target classes")
    probabilities = torch.softmax(logits, dim=1).cpu().numpy()
    chosen = probabilities.argmax(axis=1)
    if targets is not None:
        given = [t is not None for t in targets]
        chosen[given] = [int(t) for t in targets if t is not None]
    return CamResult(
        cams=np.asarray(cams, dtype=np.float32),
        probabilities=probabilities.astype(np.float32),
        targets=chosen.astype(np.int64),
        map_size=map_sizes[0],
    )
