"""How well each model's Grad-CAMs sit on the cars, against what chance would score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from cars.config import REGIMES
from cars.figures.style import add_title, regime_color, save_figure, shorten_name
from cars.stats import mean_interval, proportion_interval

# cars.learn.gradcam.POINTING_TOLERANCE, repeated so that drawing needs no torch import.
POINTING_TOLERANCE = 15
REQUIRED_COLUMNS = ("model", "regime", "energy_inside", "box_area_share", "pointing_hit")


def _summarise(measures: pd.DataFrame) -> pd.DataFrame:
    """Per model: means with 95 % intervals, and counts, in first-seen model order.

    The energy share's interval is Student's t, the pointing hits' Wilson's, as in
    ``summary.md``.
    """
    rows = []
    for model, group in measures.groupby("model", sort=False):
        energy = mean_interval(group["energy_inside"].astype(float).to_numpy())
        hits = proportion_interval(group["pointing_hit"].to_numpy(dtype=bool))
        rows.append(
            {
                "model": model,
                "regime": group["regime"].iloc[0],
                "energy": energy.value,
                "energy_error": _error(energy.value, energy.low, energy.high),
                "energy_n": energy.n,
                "skipped": len(group) - energy.n,
                "uniform": group["box_area_share"].mean(),
                "pointing": hits.value,
                "pointing_error": _error(hits.value, hits.low, hits.high),
                "center": group["center_hit"].astype(float).mean()
                if "center_hit" in group.columns
                else np.nan,
                "n": len(group),
            }
        )
    return pd.DataFrame(rows)


def _error(value: float, low: float, high: float) -> tuple[float, float]:
    """Error-bar lengths below and above ``value``, cut to a share's range; 0 where unknown."""
    below, above = value - max(low, 0.0), min(high, 1.0) - value
    return (0.0 if np.isnan(below) else below, 0.0 if np.isnan(above) else above)


def _draw_bars(ax, summary: pd.DataFrame, value: str, error: str, baseline: str) -> None:
    x = np.arange(len(summary))
    colors = [regime_color(r) for r in summary["regime"]]
    bars = ax.bar(
        x,
        summary[value].fillna(0),
        yerr=np.array(summary[error].tolist(), dtype=float).reshape(-1, 2).T,
        capsize=4,
        color=colors,
        edgecolor="black",
        linewidth=0.6,
    )
    for bar, mean in zip(bars, summary[value], strict=True):
        label = "n/a" if pd.isna(mean) else f"{mean:.0%}"
        ax.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, 0),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color="white" if not pd.isna(mean) and mean > 0.1 else "black",
            weight="bold",
        )
    if summary[baseline].notna().any():
        ax.hlines(
            summary[baseline],
            x - 0.45,
            x + 0.45,
            colors="black",
            linestyles="--",
            linewidth=1.6,
            zorder=5,
        )
    ax.set_xticks(x, [shorten_name(m, 14, 3) for m in summary["model"]], fontsize=8.5)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.set_xlabel("model")


def plot_cam_measures(
    measures: pd.DataFrame,
    path: str | Path,
    *,
    title: str | None = None,
    tolerance: float = POINTING_TOLERANCE,
) -> Path:
    """Mean energy share inside the box and pointing accuracy per model, with chance baselines.

    Args:
        measures: one row per image and model: ``model``, ``regime``,
            ``energy_inside`` (NaN for an all-zero CAM: left out of the mean and
            counted), ``box_area_share`` and ``pointing_hit``; optional
            ``center_hit`` (the centre-point baseline), as
            ``cars.learn.gradcam.measure_cams`` returns them plus the two ids.
        tolerance: the pointing game's tolerance the hits were scored with (pixels).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in measures.columns]
    if missing:
        raise ValueError(f"the measures table lacks columns {missing}; it needs {REQUIRED_COLUMNS}")
    if measures.empty:
        raise ValueError("the measures table is empty: no CAM was measured")
    summary = _summarise(measures)
    fig = Figure(figsize=(max(8.0, 1.6 * len(summary) + 4), 4.8), layout="constrained")
    energy_ax, pointing_ax = fig.subplots(1, 2)
    _draw_bars(energy_ax, summary, "energy", "energy_error", "uniform")
    energy_ax.set_ylabel("mean share of CAM energy inside the box")
    energy_ax.set_title("Energy inside the bounding box")
    _draw_bars(pointing_ax, summary, "pointing", "pointing_error", "center")
    pointing_ax.set_ylabel("share of images whose CAM peak is on the car")
    pointing_ax.set_title(f"Pointing game ({tolerance:.1f} px tolerance)")
    skipped = int(summary["skipped"].sum())
    if skipped:
        energy_ax.text(
            0.99,
            0.98,
            f"{skipped} all-zero CAM(s) left out",
            ha="right",
            va="top",
            transform=energy_ax.transAxes,
            fontsize=8,
            color="dimgray",
        )

    regimes = [r for r in REGIMES if r in set(summary["regime"])]
    handles = [Patch(facecolor=regime_color(r), edgecolor="black", label=r) for r in regimes]
    handles.append(
        Line2D(
            [],
            [],
            color="black",
            linestyle="--",
            label="chance: uniform map (energy) / image centre (pointing)",
        )
    )
    fig.legend(
        handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False
    )
    images = int(summary["n"].max())
    default = (
        f"Does Grad-CAM look at the car? ({images} test images per model, mean, 95 % interval)"
    )
    add_title(fig, title or default, fontsize=12)
    return save_figure(fig, path)
