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

# cars.gradcam.POINTING_TOLERANCE, repeated so that drawing needs no torch import.
POINTING_TOLERANCE = 15
REQUIRED_COLUMNS = ("model", "regime", "energy_inside", "box_area_share", "pointing_hit")


def _summarise(measures: pd.DataFrame) -> pd.DataFrame:
    """Per model: means, standard errors and counts, in first-seen model order."""
    rows = []
    for model, group in measures.groupby("model", sort=False):
        energy = group["energy_inside"].astype(float).dropna()
        hits = group["pointing_hit"].astype(float)
        rows.append(
            {
                "model": model,
                "regime": group["regime"].iloc[0],
                "energy": energy.mean(),
                "energy_se": energy.std(ddof=1) / np.sqrt(len(energy)) if len(energy) > 1 else 0,
                "energy_n": len(energy),
                "skipped": len(group) - len(energy),
                "uniform": group["box_area_share"].mean(),
                "pointing": hits.mean(),
                "pointing_se": np.sqrt(hits.mean() * (1 - hits.mean()) / len(hits)),
                "center": group["center_hit"].astype(float).mean()
                if "center_hit" in group.columns
                else np.nan,
                "n": len(group),
            }
        )
    return pd.DataFrame(rows)


def _draw_bars(ax, summary: pd.DataFrame, value: str, error: str, baseline: str) -> None:
    x = np.arange(len(summary))
    colors = [regime_color(r) for r in summary["regime"]]
    bars = ax.bar(
        x,
        summary[value].fillna(0),
        yerr=summary[error].fillna(0),
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
            ``cars.gradcam.measure_cams`` returns them plus the two ids.
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
    _draw_bars(energy_ax, summary, "energy", "energy_se", "uniform")
    energy_ax.set_ylabel("mean share of CAM energy inside the box")
    energy_ax.set_title("Energy inside the bounding box")
    _draw_bars(pointing_ax, summary, "pointing", "pointing_se", "center")
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
    default = f"Does Grad-CAM look at the car? ({images} test images per model, mean ± s.e.)"
    add_title(fig, title or default, fontsize=12)
    return save_figure(fig, path)
