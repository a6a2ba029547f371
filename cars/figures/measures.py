"""How well each model's Grad-CAMs sit on the cars, beside an untrained network and chance.

Each panel has one bar per model (the regimes, then the untrained baseline) and
a last, hatched bar for chance: a uniform map's energy share (the box's area
share) and the pointing game of the image centre. Every bar carries its 95 %
interval, so a regime's interval can be read against the baseline's and chance's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from cars.config import RANDOM_INIT, REGIMES
from cars.figures.style import (
    add_title,
    regime_color,
    regime_label,
    save_figure,
    shorten_name,
)
from cars.stats import Interval, mean_interval, proportion_interval

# cars.learn.gradcam.POINTING_TOLERANCE, repeated so that drawing needs no torch import.
POINTING_TOLERANCE = 15
REQUIRED_COLUMNS = ("model", "regime", "energy_inside", "box_area_share", "pointing_hit")
CHANCE = "chance"
_CHANCE_HATCH = "//"


def _bar(label: str, regime: str, interval: Interval) -> dict[str, object]:
    return {
        "label": label,
        "regime": regime,
        "value": interval.value,
        "error": _error(interval.value, interval.low, interval.high),
        "n": interval.n,
    }


def summarise_cam_measures(measures: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The bars the chart draws: energy and pointing (``label``, ``regime``, ``value``,
    ``error`` below and above, ``n``; models in first-seen order, then chance), and how
    many all-zero CAMs the energy means left out.

    The energy share's interval is Student's t, the pointing hits' Wilson's, as in
    ``summary.md``. Every model sees the same images, so chance is read off the first.
    """
    energy, pointing, skipped = [], [], 0
    for model, group in measures.groupby("model", sort=False):
        regime = str(group["regime"].iloc[0])
        interval = mean_interval(group["energy_inside"].astype(float).to_numpy())
        skipped += len(group) - interval.n
        energy.append(_bar(str(model), regime, interval))
        hits = proportion_interval(group["pointing_hit"].to_numpy(dtype=bool))
        pointing.append(_bar(str(model), regime, hits))
    first = measures[measures["model"] == measures["model"].iloc[0]]
    uniform = mean_interval(first["box_area_share"].astype(float).to_numpy())
    energy.append(_bar("uniform map", CHANCE, uniform))
    if "center_hit" in first.columns:
        centre = proportion_interval(first["center_hit"].to_numpy(dtype=bool))
        pointing.append(_bar("image centre", CHANCE, centre))
    return pd.DataFrame(energy), pd.DataFrame(pointing), skipped


def _error(value: float, low: float, high: float) -> tuple[float, float]:
    """Error-bar lengths below and above ``value``, cut to a share's range; 0 where unknown."""
    below, above = value - max(low, 0.0), min(high, 1.0) - value
    return (0.0 if np.isnan(below) else below, 0.0 if np.isnan(above) else above)


def _draw_bars(ax: Axes, bars: pd.DataFrame) -> None:
    x = np.arange(len(bars))
    chance = (bars["regime"] == CHANCE).to_numpy()
    drawn = ax.bar(
        x,
        bars["value"].fillna(0),
        yerr=np.array(bars["error"].tolist(), dtype=float).reshape(-1, 2).T,
        capsize=4,
        color=[
            "white" if c else regime_color(r) for c, r in zip(chance, bars["regime"], strict=True)
        ],
        hatch=[_CHANCE_HATCH if c else None for c in chance],
        edgecolor="black",
        linewidth=0.6,
    )
    for bar, mean, is_chance in zip(drawn, bars["value"], chance, strict=True):
        label = "n/a" if pd.isna(mean) else f"{mean:.0%}"
        ax.annotate(
            label,
            (bar.get_x() + bar.get_width() / 2, 0),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color="white" if not is_chance and not pd.isna(mean) and mean > 0.1 else "black",
            weight="bold",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1} if is_chance else None,
        )
    ax.set_xticks(x, [shorten_name(m, 14, 3) for m in bars["label"]], fontsize=8.5)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(axis="y", alpha=0.3)


def _legend_handles(regimes: set[str]) -> list[Patch]:
    shown = [r for r in (*REGIMES, RANDOM_INIT) if r in regimes]
    handles = [
        Patch(
            facecolor=regime_color(r),
            edgecolor="black",
            label=f"{r} ({regime_label(r)})" if r == RANDOM_INIT else r,
        )
        for r in shown
    ]
    handles.append(
        Patch(
            facecolor="white",
            edgecolor="black",
            hatch=_CHANCE_HATCH,
            label="chance: uniform map (energy) / image centre (pointing)",
        )
    )
    return handles


def plot_cam_measures(
    measures: pd.DataFrame,
    path: str | Path,
    *,
    title: str | None = None,
    tolerance: float = POINTING_TOLERANCE,
) -> Path:
    """Mean energy share inside the box and pointing accuracy per model, beside chance.

    Args:
        measures: one row per image and model: ``model``, ``regime`` (or
            ``cars.config.RANDOM_INIT`` for the untrained baseline),
            ``energy_inside`` (NaN for an all-zero CAM: left out of the mean and
            counted), ``box_area_share`` and ``pointing_hit``; optional
            ``center_hit`` (the centre-point baseline), as
            ``cars.learn.gradcam.measure_cams`` returns them plus the two ids.
            Every model is measured on the same images.
        tolerance: the pointing game's tolerance the hits were scored with (pixels).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in measures.columns]
    if missing:
        raise ValueError(f"the measures table lacks columns {missing}; it needs {REQUIRED_COLUMNS}")
    if measures.empty:
        raise ValueError("the measures table is empty: no CAM was measured")
    energy, pointing, skipped = summarise_cam_measures(measures)
    fig = Figure(figsize=(max(8.0, 1.6 * len(energy) + 3), 4.8), layout="constrained")
    energy_ax, pointing_ax = fig.subplots(1, 2)
    _draw_bars(energy_ax, energy)
    energy_ax.set_ylabel("mean share of CAM energy inside the box")
    energy_ax.set_title("Energy inside the bounding box")
    _draw_bars(pointing_ax, pointing)
    pointing_ax.set_ylabel("share of images whose CAM peak is on the car")
    pointing_ax.set_title(f"Pointing game ({tolerance:.1f} px tolerance)")
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
    handles = _legend_handles(set(measures["regime"]))
    fig.legend(
        handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False
    )
    images = int(measures.groupby("model", sort=False).size().max())
    default = (
        f"Does Grad-CAM look at the car? ({images} test images per model, mean, 95 % interval)"
    )
    add_title(fig, title or default, fontsize=12)
    return save_figure(fig, path)
