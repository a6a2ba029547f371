"""Every figure of the report, drawn with matplotlib's Agg canvas (no display needed).

Each function takes arrays or data frames, writes one PNG atomically and
returns its path. Regimes have one colour everywhere (``REGIME_COLORS``).
"""

from cars.figures.cams import plot_gradcam_grid, plot_regime_comparison
from cars.figures.curves import plot_learning_curves
from cars.figures.measures import plot_cam_measures
from cars.figures.style import REGIME_COLORS, save_figure, shorten_name

__all__ = [
    "REGIME_COLORS",
    "plot_cam_measures",
    "plot_gradcam_grid",
    "plot_learning_curves",
    "plot_regime_comparison",
    "save_figure",
    "shorten_name",
]
