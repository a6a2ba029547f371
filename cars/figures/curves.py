"""Learning curves of a sweep: one line per trial, coloured by regime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cars.config import METRIC, REGIMES, selection_score
from cars.figures.style import add_title, regime_color, save_figure, shorten_name

REQUIRED_COLUMNS = ("trial_id", "regime", "epoch", METRIC)
_THIN = {"linewidth": 1.0, "alpha": 0.35}
_BOLD = {"linewidth": 2.6, "alpha": 1.0, "zorder": 5}


def _check_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in epochs.columns]
    if missing:
        raise ValueError(
            f"the epochs table lacks columns {missing}; it needs one row per trial and epoch "
            f"with {list(REQUIRED_COLUMNS)} (train_acc, val_loss, train_loss, label optional)"
        )
    if epochs.empty or not epochs[METRIC].notna().any():
        raise ValueError(f"the epochs table is empty: no trial reported {METRIC}")
    unknown = sorted(set(epochs["regime"]) - set(REGIMES))
    if unknown:
        raise ValueError(f"unknown regimes {unknown} in the epochs table; regimes are {REGIMES}")
    if (epochs["epoch"] < 1).any():
        raise ValueError("epochs are counted from 1; found an epoch below 1")
    # A trial restored from a checkpoint may report an epoch twice: keep the latest.
    table = epochs.drop_duplicates(["trial_id", "epoch"], keep="last")
    return table.sort_values(["trial_id", "epoch"])


def _best_trials(table: pd.DataFrame) -> dict[str, pd.Series]:
    """Each regime's best trial, as the row of its best epoch (the report's choice).

    Epochs rank by :func:`cars.config.selection_score`, ties to the later epoch;
    trials by their best epoch, ties to the earlier trial.
    """
    scored = table.assign(_score=table.apply(selection_score, axis=1)).dropna(subset=["_score"])
    ranked = scored.sort_values(["_score", "trial_id", "epoch"], ascending=[False, True, False])
    return {str(row["regime"]): row for _, row in ranked.groupby("regime").head(1).iterrows()}


def _has(table: pd.DataFrame, column: str) -> bool:
    return column in table.columns and bool(table[column].notna().any())


def _draw_trial(
    ax: Axes, trial: pd.DataFrame, column: str, *, color: str, bold: bool, last: int
) -> None:
    style = _BOLD if bold else _THIN
    single = len(trial) == 1
    ax.plot(
        trial["epoch"],
        trial[column],
        color=color,
        marker="o" if single else None,
        markersize=5,
        **style,
    )
    if int(trial["epoch"].iloc[-1]) < last:  # stopped early (e.g. by ASHA)
        ax.plot(
            trial["epoch"].iloc[-1],
            trial[column].iloc[-1],
            marker="x",
            color=color,
            markersize=6,
            linestyle="none",
            alpha=style["alpha"],
        )


def _legend_handles(table: pd.DataFrame, best: dict[str, pd.Series]) -> list[Line2D]:
    """One entry per regime naming its best trial, then a key to the line styles."""
    handles = []
    for regime in (r for r in REGIMES if r in best):
        trial_id, value = str(best[regime]["trial_id"]), float(best[regime][METRIC])
        trials = table[table["regime"] == regime]
        config = trial_id
        if "label" in trials.columns:
            labels = trials.loc[trials["trial_id"].astype(str) == trial_id, "label"].dropna()
            config = str(labels.iloc[0]) if len(labels) else trial_id
        count = trials["trial_id"].nunique()
        text = f"{regime} ({count} trial{'s' * (count != 1)}); best {value:.1%}: {config}"
        bold = {k: v for k, v in _BOLD.items() if k != "zorder"}
        handles.append(
            Line2D([], [], color=regime_color(regime), label=shorten_name(text, 60), **bold)
        )
    handles.append(Line2D([], [], color="grey", label="other trials", **_THIN))
    if _has(table, "train_acc") or _has(table, "train_loss"):
        handles.append(Line2D([], [], color="grey", linestyle="--", label="train (best trials)"))
    star = {"marker": "*", "markersize": 12, "markeredgecolor": "black", "linestyle": "none"}
    handles.append(Line2D([], [], color="grey", label="best epoch", **star))
    ends = table.groupby("trial_id")["epoch"].max()
    if (ends < ends.max()).any():
        handles.append(
            Line2D([], [], color="grey", marker="x", linestyle="none", label="stopped early")
        )
    return handles


def plot_learning_curves(
    epochs: pd.DataFrame, path: str | Path, *, title: str | None = None
) -> Path:
    """Validation accuracy (and loss, if reported) per epoch for every trial of a sweep.

    Args:
        epochs: one row per trial and epoch: ``trial_id``, ``regime``, ``epoch``
            (1-based) and ``val_acc``; optional ``train_acc`` (dashed, for the
            best trials), ``val_loss`` (a second panel; ``train_loss`` dashed),
            and ``label``, a short description of the trial's config shown for
            each regime's best trial (default: the trial id). A trial that
            reports an epoch twice (resumed from a checkpoint) keeps the last.
        path: where the PNG goes.
    """
    table = _check_epochs(epochs)
    best = _best_trials(table)
    show_loss = _has(table, "val_loss")
    last_epoch = int(table["epoch"].max())
    fig = Figure(figsize=(12.5 if show_loss else 7.5, 5.6), layout="constrained")
    axes = fig.subplots(1, 2 if show_loss else 1, squeeze=False)[0]
    panels = [(axes[0], METRIC, "train_acc", "accuracy")]
    if show_loss:
        panels.append((axes[1], "val_loss", "train_loss", "loss"))

    for trial_id, trial in table.groupby("trial_id", sort=False):
        regime = trial["regime"].iloc[0]
        color = regime_color(regime)
        peak = best.get(regime)
        is_best = peak is not None and str(peak["trial_id"]) == str(trial_id)
        for ax, column, train_column, _ in panels:
            _draw_trial(ax, trial, column, color=color, bold=is_best, last=last_epoch)
            if is_best and _has(trial, train_column):
                ax.plot(
                    trial["epoch"],
                    trial[train_column],
                    color=color,
                    linestyle="--",
                    linewidth=1.4,
                    zorder=4,
                    # A lone epoch has no line to dash: show it as a hollow point.
                    marker="o" if len(trial) == 1 else None,
                    markerfacecolor="white",
                )
        if is_best:
            axes[0].plot(
                peak["epoch"],
                peak[METRIC],
                marker="*",
                markersize=14,
                zorder=6,
                color=color,
                markeredgecolor="black",
            )

    for ax, _, train_column, label in panels:
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        train = " (train: dashed)" if _has(table, train_column) else ""
        ax.set_title(f"Validation {label} per epoch{train}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, last_epoch + 0.5)
        ax.grid(alpha=0.3)
    top = float(np.nanmax(table[[c for c in (METRIC, "train_acc") if _has(table, c)]].to_numpy()))
    axes[0].set_ylim(0, min(1.0, top * 1.08 + 0.02))
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))

    fig.legend(
        handles=_legend_handles(table, best),
        loc="outside lower center",
        ncols=2 if show_loss else 1,
        fontsize=9,
        frameon=False,
    )
    add_title(fig, title or "Learning curves: one line per trial, coloured by regime")
    return save_figure(fig, path)
