"""The public entry point for the Grad-CAM measures (see :mod:`cars.learn.gradcam`)."""

from cars.learn.gradcam import (
    MEASURE_COLUMNS,
    POINTING_TOLERANCE,
    box_area_share,
    center_hit,
    compute_cams,
    energy_inside_box,
    measure_cams,
    pointing_game_hit,
)

__all__ = [
    "MEASURE_COLUMNS",
    "POINTING_TOLERANCE",
    "box_area_share",
    "center_hit",
    "compute_cams",
    "energy_inside_box",
    "measure_cams",
    "pointing_game_hit",
]
