"""The confirmation stage in the report: each regime's winner retrained with fresh seeds.

``confirm.parquet`` lists every confirmation run with its validation and test
scores; ``regimes.parquet`` gains their mean and standard deviation across seeds,
beside the single-seed figures of the sweep's own best trial.
"""

from __future__ import annotations

import math

import pandas as pd

from cars.report.results import SweepResults, is_number, read_sweep_results
from cars.runs import SWEEP_CONFIG_FILE, confirm_path
from cars.stats import seed_spread
from cars.storage import exists, join_path

CONFIRM_COLUMNS = (
    "trial_id",
    "regime",
    "seed",
    "lr",
    "trainable_blocks",
    "augment",
    "status",
    "epochs_run",
    "best_epoch",
    "best_val_acc",
    "best_val_loss",
    "checkpoint",
)
SPREAD_COLUMNS = (
    "confirm_runs",
    "confirm_val_acc_mean",
    "confirm_val_acc_std",
    "confirm_test_acc_mean",
    "confirm_test_acc_std",
)
# What a confirmation run repeats of its regime's best trial.
REPEATED = ("lr", "trainable_blocks", "augment")


def _same_config(run: pd.Series, best: pd.Series) -> bool:
    for key in REPEATED:
        ours, theirs = run[key], best[key]
        if is_number(ours) and is_number(theirs):
            if not math.isclose(float(ours), float(theirs), rel_tol=1e-9):
                return False
        elif ours != theirs:
            return False
    return True


def match_repeats(repeats: pd.DataFrame, regimes: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The confirmation runs of each regime's current best configuration, and notes.

    A run of another configuration (the sweep was resumed after its confirmation
    and a regime's best changed) is left out of the spread and named in a note.
    """
    keep, notes = [], []
    bests = regimes.set_index("regime")
    for index, run in repeats.iterrows():
        if run["regime"] not in bests.index:
            notes.append(f"confirmation run {run['trial_id']}: regime {run['regime']} not scored")
        elif not _same_config(run, bests.loc[run["regime"]]):
            notes.append(
                f"confirmation run {run['trial_id']} ({run['regime']}) repeats a configuration "
                "that is no longer its regime's best: left out of the spread"
            )
        else:
            keep.append(index)
    return repeats.loc[keep], notes


def read_confirm_runs(
    results: SweepResults, regimes: pd.DataFrame, notes: list[str]
) -> pd.DataFrame | None:
    """The confirmation runs of the regimes' best configurations, if the sweep asked for them.

    What is missing or left out is added to ``notes``.
    """
    seeds = results.config.confirm
    if seeds == 0:
        return None
    path = confirm_path(results.path)
    if not exists(join_path(path, SWEEP_CONFIG_FILE)):
        notes.append(
            f"the confirmation stage ({seeds} fresh seeds per regime) has not run: "
            f"`python jobs/sweep.py --resume --storage {results.config.storage} "
            f"--name {results.name}` runs it"
        )
        return None
    confirm = read_sweep_results(path)
    notes.extend(f"confirmation: {line}" for line in confirm.missing)
    runs, mismatched = match_repeats(confirm.trials, regimes)
    notes.extend(mismatched)
    return runs.reindex(columns=list(CONFIRM_COLUMNS)).reset_index(drop=True)


def summarise_repeats(repeats: pd.DataFrame, regimes: pd.DataFrame) -> pd.DataFrame:
    """``regimes`` with the mean and standard deviation of its confirmation runs' scores.

    Only runs with a checkpoint count; a regime without any gets zero runs and nulls.
    """
    rows = []
    for regime in regimes["regime"]:
        runs = repeats[(repeats["regime"] == regime) & repeats["checkpoint"].notna()]
        val = seed_spread(runs["best_val_acc"].to_numpy(dtype=float))
        test = seed_spread(runs["test_acc"].to_numpy(dtype=float))
        rows.append(
            {
                "confirm_runs": len(runs),
                "confirm_val_acc_mean": val.mean,
                "confirm_val_acc_std": val.std,
                "confirm_test_acc_mean": test.mean,
                "confirm_test_acc_std": test.std,
            }
        )
    spread = pd.DataFrame(rows, columns=list(SPREAD_COLUMNS), index=regimes.index)
    return pd.concat([regimes, spread.astype({"confirm_runs": int})], axis=1)


def _spread_text(mean: object, std: object) -> str:
    if not is_number(mean):
        return "n/a"
    deviation = f" ± {100 * float(std):.1f}" if is_number(std) else ""
    return f"{100 * float(mean):.1f}{deviation}%"


def render_repeats(regimes: pd.DataFrame, seeds: int) -> list[str]:
    """The summary's lines on the confirmation runs, beside the single-seed figures."""
    lines = [
        f"Each regime's best configuration trained again with {seeds} fresh seed(s), to the "
        "last epoch (`confirm.parquet`): mean ± standard deviation across seeds (sample "
        "standard deviation), beside the sweep's single run of that configuration.",
        "",
        "| regime | seeds | val acc, single seed | val acc, mean ± sd | test acc, single seed "
        "| test acc, mean ± sd |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in regimes.iterrows():
        lines.append(
            f"| {row['regime']} | {int(row['confirm_runs'])} "
            f"| {_spread_text(row['best_val_acc'], None)} "
            f"| {_spread_text(row['confirm_val_acc_mean'], row['confirm_val_acc_std'])} "
            f"| {_spread_text(row['test_acc'], None)} "
            f"| {_spread_text(row['confirm_test_acc_mean'], row['confirm_test_acc_std'])} |"
        )
    return lines
