"""Reading a sweep back from its storage: one row per trial, one per trial and epoch.

Works on finished and on interrupted sweeps: a trial that never reported, or
whose run left no checkpoint, is still listed, with what is missing. Runs and
trials are read through :mod:`cars.runs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cars.config import METRIC, REGIMES, TIE_BREAK, resolve_trainable_blocks, selection_score
from cars.runs import read_run, read_sweep_config, read_trials, train_run_name
from cars.storage import join_path
from cars.sweep_config import SweepConfig

# Per-epoch metrics the trainer reports, in the order the learning-curve table keeps.
EPOCH_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "train_top5",
    "val_loss",
    "val_acc",
    "val_top5",
    "lr",
    "epoch_seconds",
    "images_per_second",
)
SWEPT = ("regime", "seed", "lr", "trainable_blocks", "augment")


@dataclass(frozen=True)
class SweepResults:
    """A sweep's trials and learning curves, and what could not be read."""

    path: str
    name: str
    config: SweepConfig
    trials: pd.DataFrame
    epochs: pd.DataFrame
    missing: list[str] = field(default_factory=list)


def _status(trial: Any, epochs_run: int, max_epochs: int) -> tuple[str, bool]:
    """The trial's state in words, and whether ASHA stopped it early."""
    if trial.status == "ERROR":
        return "errored", False
    if trial.status == "TERMINATED":
        return "finished", epochs_run < max_epochs
    if epochs_run == 0:
        return "not started", False
    return "interrupted", False


@dataclass(frozen=True)
class TrainRunState:
    """What a trial's run left in storage."""

    best_checkpoint: str | None
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]


def read_train_run(train_path: str) -> TrainRunState:
    """A run's best checkpoint (:attr:`cars.runs.StoredRun.best`) and its epochs."""
    run = read_run(train_path)
    # Without a validation score (an empty val split) there is no best checkpoint,
    # only the last one.
    chosen = run.best or run.latest
    if chosen is None:
        return TrainRunState(None, {}, run.history)
    return TrainRunState(chosen.location, dict(chosen.metrics), run.history)


def best_epoch(curve: pd.DataFrame) -> pd.Series | None:
    """A learning curve's best epoch, as :attr:`cars.runs.StoredRun.best` picks its checkpoint.

    ``None`` when no epoch has a validation score (an empty val split).
    """
    scores = curve.apply(selection_score, axis=1) if len(curve) else pd.Series(dtype=float)
    scores = scores.dropna()
    if scores.empty:
        return None
    # The curve runs in epoch order; the last of equal scores is the later epoch.
    return curve.loc[scores[::-1].idxmax()]


def _epochs_of(frame: pd.DataFrame | None, history: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per epoch, from the checkpoint's history and Tune's log of the trial.

    A restored trial's Tune log starts where its Train run resumed, so the
    history supplies the epochs before; an epoch in both keeps Tune's report.
    """
    frame = pd.concat([pd.DataFrame(history), frame], ignore_index=True)
    if frame.empty or "epoch" not in frame:
        return pd.DataFrame(columns=list(EPOCH_COLUMNS))
    frame = frame.dropna(subset=["epoch"]).astype({"epoch": int})
    frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch")
    return frame.reindex(columns=list(EPOCH_COLUMNS)).reset_index(drop=True)


def _trial_row(
    trial: Any, curve: pd.DataFrame, run: TrainRunState, sweep: SweepConfig
) -> dict[str, Any]:
    config = trial.config
    row: dict[str, Any] = {"trial_id": trial.trial_id}
    row.update({key: config.get(key) for key in SWEPT})
    row["trainable_blocks"] = resolve_trainable_blocks(
        config["regime"], config.get("trainable_blocks")
    )
    status, stopped_early = _status(trial, len(curve), sweep.epochs)
    row.update(status=status, stopped_early=stopped_early, epochs_run=len(curve))
    row["max_epochs"] = sweep.epochs
    best = best_epoch(curve)
    if best is not None:
        row.update(
            best_epoch=int(best["epoch"]),
            best_val_acc=float(best["val_acc"]),
            best_val_loss=float(best["val_loss"]),
            best_val_top5=float(best["val_top5"]),
        )
    if len(curve):
        last = curve.iloc[-1]
        row.update(
            last_val_acc=float(last["val_acc"]),
            last_val_loss=float(last["val_loss"]),
            last_train_acc=float(last["train_acc"]),
            last_train_loss=float(last["train_loss"]),
            seconds_per_epoch=float(curve["epoch_seconds"].mean()),
            images_per_second=float(curve["images_per_second"].mean()),
        )
    row["trainable_params"] = run.best_metrics.get("trainable_params")
    row["total_params"] = run.best_metrics.get("total_params")
    row["checkpoint"] = run.best_checkpoint
    return row


TRIAL_COLUMNS = (
    "trial_id",
    *SWEPT,
    "status",
    "stopped_early",
    "epochs_run",
    "max_epochs",
    "best_epoch",
    "best_val_acc",
    "best_val_loss",
    "best_val_top5",
    "last_val_acc",
    "last_val_loss",
    "last_train_acc",
    "last_train_loss",
    "trainable_params",
    "total_params",
    "seconds_per_epoch",
    "images_per_second",
    "checkpoint",
    "train_run",
)


def read_sweep_results(path: str) -> SweepResults:
    """Read every trial of the sweep at ``path``, finished or not."""
    sweep = read_sweep_config(path)
    rows, epoch_frames, missing = [], [], []
    for trial in read_trials(path):
        train_path = join_path(path, train_run_name(trial.trial_id))
        run = read_train_run(train_path)
        curve = _epochs_of(trial.results, run.history)
        row = {**_trial_row(trial, curve, run, sweep), "train_run": train_path}
        rows.append(row)
        if row["status"] != "finished":
            missing.append(f"trial {trial.trial_id} ({row['regime']}) is {row['status']}")
        if len(curve) and row["checkpoint"] is None:
            missing.append(f"trial {trial.trial_id} has no checkpoint in {row['train_run']}")
        epoch_frames.append(curve.assign(trial_id=trial.trial_id, regime=row["regime"]))
    trials = pd.DataFrame(rows).reindex(columns=list(TRIAL_COLUMNS))
    trials = trials.astype(
        {
            "stopped_early": bool,
            "epochs_run": int,
            "max_epochs": int,
            "best_epoch": "Int64",
            "trainable_blocks": "Int64",
            "trainable_params": "Int64",
            "total_params": "Int64",
        }
    )
    epochs = pd.concat([f for f in epoch_frames if len(f)] or [pd.DataFrame()], ignore_index=True)
    epochs = epochs.reindex(columns=["trial_id", "regime", *EPOCH_COLUMNS])
    epochs = epochs.astype({"epoch": int}) if len(epochs) else epochs
    return SweepResults(
        path=path, name=sweep.name, config=sweep, trials=trials, epochs=epochs, missing=missing
    )


def rank_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials with a best epoch, best first: by the score of that epoch, then trial id.

    The score is :func:`cars.config.selection_score` of the best epoch's
    ``best_<METRIC>`` and ``best_<TIE_BREAK>``, so trials rank as epochs do.
    """
    if trials.empty:
        return trials
    scores = trials.apply(
        lambda row: selection_score(
            {METRIC: row[f"best_{METRIC}"], TIE_BREAK: row[f"best_{TIE_BREAK}"]}
        ),
        axis=1,
    )
    ranked = trials.assign(_score=scores).dropna(subset=["_score"])
    ranked = ranked.sort_values(["_score", "trial_id"], ascending=[False, True])
    return ranked.drop(columns="_score")


def select_regime_bests(trials: pd.DataFrame) -> pd.DataFrame:
    """The best trial (see :func:`rank_trials`) of each regime that has a checkpoint."""
    best = rank_trials(trials.dropna(subset=["checkpoint"])).groupby("regime", sort=False).head(1)
    order = {regime: i for i, regime in enumerate(REGIMES)}
    return best.sort_values("regime", key=lambda r: r.map(order)).reset_index(drop=True)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (not None, NaN or pandas' NA)."""
    return isinstance(value, int | float | np.integer | np.floating) and not math.isnan(value)
