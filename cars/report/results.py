"""Reading a sweep back from its storage: one row per trial, one per trial and epoch.

Works on finished and on interrupted sweeps: a trial that never reported, or
whose Train run left no checkpoint, is still listed, with what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from ray.tune import ExperimentAnalysis

from cars.config import METRIC, MODE, REGIMES
from cars.history import read_checkpoint_history
from cars.storage import join_path
from cars.sweep import read_sweep_config, train_run_name
from cars.sweep_config import SweepConfig
from cars.train import checkpoint_location, read_train_result

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
    """What a trial's Train run left in storage."""

    best_checkpoint: str | None
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]


def read_train_run(train_path: str) -> TrainRunState:
    """The best checkpoint (by the sweep metric) of a Train run, and its epochs so far."""
    result = read_train_result(train_path)
    if result is None:
        return TrainRunState(None, {}, [])
    history = read_checkpoint_history(result.checkpoint) if result.checkpoint else []
    scored = [(c, m) for c, m in result.best_checkpoints if is_number(m.get(METRIC))]
    if not scored:
        # Without a validation score (an empty val split) there is no best checkpoint,
        # only the last one.
        last = result.checkpoint
        return TrainRunState(
            checkpoint_location(last) if last else None,
            history[-1] if history else {},
            history,
        )
    sign = 1 if MODE == "max" else -1
    checkpoint, metrics = max(scored, key=lambda cm: (sign * cm[1][METRIC], -cm[1]["val_loss"]))
    return TrainRunState(checkpoint_location(checkpoint), metrics, history)


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
    row["trainable_blocks"] = {"scratch": 14, "frozen": 0}.get(
        config.get("regime"), config.get("trainable_blocks")
    )
    status, stopped_early = _status(trial, len(curve), sweep.epochs)
    row.update(status=status, stopped_early=stopped_early, epochs_run=len(curve))
    row["max_epochs"] = sweep.epochs
    scored = curve.dropna(subset=[METRIC])  # an empty val split scores no epoch
    if len(scored):
        best = scored.loc[scored[METRIC].idxmax() if MODE == "max" else scored[METRIC].idxmin()]
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
    analysis = ExperimentAnalysis(path)
    curves = analysis.trial_dataframes
    rows, epoch_frames, missing = [], [], []
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        train_path = join_path(path, train_run_name(trial.trial_id))
        run = read_train_run(train_path)
        curve = _epochs_of(curves.get(trial.trial_id), run.history)
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


def select_regime_bests(trials: pd.DataFrame) -> pd.DataFrame:
    """The best trial of each regime that has a checkpoint, by best validation accuracy.

    Ties (common on small validation sets) go to the lower validation loss at
    the best epoch, then to the earlier trial.
    """
    scored = trials.dropna(subset=["best_val_acc", "checkpoint"])
    if scored.empty:
        return scored
    ascending = MODE != "max"
    ordered = scored.sort_values(
        ["best_val_acc", "best_val_loss", "trial_id"], ascending=[ascending, True, True]
    )
    best = ordered.groupby("regime", sort=False).head(1)
    order = {regime: i for i, regime in enumerate(REGIMES)}
    return best.sort_values("regime", key=lambda r: r.map(order)).reset_index(drop=True)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (not None, NaN or pandas' NA)."""
    return isinstance(value, int | float | np.integer | np.floating) and not math.isnan(value)
