"""Drawing one image or Grad-CAM panel: the pieces the CAM figures are built from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Rectangle

from cars.figures.style import (
    CAM_ALPHA,
    CAM_CMAP,
    CORRECT_COLOR,
    CORRECT_MARK,
    WRONG_COLOR,
    WRONG_MARK,
    shorten_name,
)

_BOX_OUTLINE = [patheffects.Stroke(linewidth=3.5, foreground="black"), patheffects.Normal()]


def check_images(images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Images as one N x H x W x 3 uint8 array, or a clear error."""
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or len(array) == 0:
        raise ValueError(
            f"images must be N x H x W x 3 uint8 RGB arrays at the model input size, got "
            f"{array.dtype} {array.shape}; undo the input normalisation before plotting"
        )
    return array


def check_cams(cams: np.ndarray, images: np.ndarray, name: str = "cams") -> np.ndarray:
    """CAMs of the images' geometry, or a clear error."""
    array = np.asarray(cams, dtype=np.float32)
    if array.shape != images.shape[:3]:
        raise ValueError(
            f"{name} must be N x H x W matching the images {images.shape[:3]}, got {array.shape}; "
            "CAMs are drawn over the model input they were computed from"
        )
    return array


def check_boxes(boxes: np.ndarray | Sequence[Sequence[float]], count: int) -> np.ndarray:
    """Boxes as an N x 4 float array, or a clear error."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.shape != (count, 4):
        raise ValueError(
            f"boxes must be {count} x 4 (x1, y1, x2, y2) in model-input pixels, got {array.shape}"
        )
    return array


def check_length(values: Sequence[object], count: int, name: str) -> list:
    """A per-image sequence of the right length, as a list."""
    values = list(values)
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries for {count} images; give one each")
    return values


# The true class shown for an image whose label is not known.
UNKNOWN_CLASS = "unknown"


def draw_image(ax: Axes, image: np.ndarray, box: np.ndarray, cam: np.ndarray | None = None) -> None:
    """The image (with the CAM over it, if given) and the true box; pixel edges on integers.

    A box of NaNs (unknown) is not drawn.
    """
    height, width = image.shape[:2]
    extent = (0, width, height, 0)
    ax.imshow(image, extent=extent, interpolation="nearest")
    if cam is not None:
        ax.imshow(
            cam,
            extent=extent,
            cmap=CAM_CMAP,
            vmin=0,
            vmax=1,
            alpha=CAM_ALPHA,
            interpolation="bilinear",
        )
    x1, y1, x2, y2 = box
    if np.isfinite(box).all():
        ax.add_patch(
            Rectangle(
                (x1, y1),
                x2 - x1,
                y2 - y1,
                fill=False,
                edgecolor="white",
                linewidth=1.8,
                path_effects=_BOX_OUTLINE,
            )
        )
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def prediction_caption(true_name: str, pred_name: str, confidence: float) -> tuple[str, str]:
    """The caption text (marked ✓/✗, not by colour alone) and its colour.

    An image whose true class is unknown is neither right nor wrong.
    """
    if true_name == UNKNOWN_CLASS:
        return f"predicted {shorten_name(pred_name)} ({confidence:.0%})", "black"
    correct = true_name == pred_name
    mark, verdict = (CORRECT_MARK, "correct") if correct else (WRONG_MARK, "wrong")
    text = f"{mark} {verdict}: predicted {shorten_name(pred_name)} ({confidence:.0%})"
    return text, CORRECT_COLOR if correct else WRONG_COLOR


def measure_caption(measures: pd.DataFrame | None, index: int) -> str:
    """The energy share in the box and pointing-game result of one image, if measured."""
    if measures is None:
        return ""
    row = measures.iloc[index]
    if not row.get("box_known", True):
        return "box unknown: not measured"
    energy = row.get("energy_inside", np.nan)
    parts = ["energy in box: n/a" if pd.isna(energy) else f"energy in box {energy:.0%}"]
    share = row.get("box_area_share", np.nan)
    if pd.notna(share) and pd.notna(energy):
        parts[0] += f" (uniform {share:.0%})"
    hit = row.get("pointing_hit", None)
    if hit is not None and pd.notna(hit):
        parts.append("pointing game: hit" if bool(hit) else "pointing game: miss")
    return "\n".join(parts)


def check_measures(measures: pd.DataFrame | None, count: int) -> pd.DataFrame | None:
    """Per-image measures (``energy_inside``, ``pointing_hit``), one row per image, or None."""
    if measures is None:
        return None
    if len(measures) != count or not {"energy_inside", "pointing_hit"} <= set(measures.columns):
        raise ValueError(
            f"measures must have {count} rows (one per image) with energy_inside and "
            f"pointing_hit, as cars.learn.gradcam.measure_cams returns; got {len(measures)} rows, "
            f"columns {list(measures.columns)}"
        )
    return measures.reset_index(drop=True)


def add_cam_colorbar(fig: Figure | SubFigure) -> None:
    """A horizontal scale for the CAM overlays, with a key to the box."""
    ax = fig.subplots(1, 3, width_ratios=[1, 2, 1])
    ax[0].set_axis_off()
    ax[2].set_axis_off()
    bar = fig.colorbar(
        ScalarMappable(Normalize(0, 1), cmap=CAM_CMAP), cax=ax[1], orientation="horizontal"
    )
    bar.set_label(
        "Grad-CAM, relative to its image's maximum (white box: the car's true box)", fontsize=9
    )
    bar.ax.tick_params(labelsize=8)
