"""The confirmation stage: each regime's best configuration trained again with fresh seeds.

A sweep's best trial per regime rests on one seed, and part of its lead over
its rivals may be luck. With ``SweepConfig.confirm`` = K, once the sweep is
done a second Tune experiment in the sweep's folder, ``confirm/``, trains each
regime's winning configuration (learning rate, depth, augmentation) with K new
seeds, to the last epoch (no early stopping: these runs are measured, not
searched). Its trials run the sweep's trainable (:mod:`cars.cluster.trial`), in
the trial's own process or driving a worker group as the sweep's do, so
``--resume`` restores an interrupted confirmation like the sweep itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import ray.tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from cars.cluster.resources import TrialResources
from cars.cluster.sweep import create_sweep_trainable, plan_resources
from cars.cluster.trial import restore_tuner, trial_failure_config
from cars.config import BEST_SCORE, SCORE_MODE
from cars.report.repeats import REPEATED
from cars.report.results import read_sweep_results, select_regime_bests
from cars.runs import CONFIRM_DIR, SWEEP_CONFIG_FILE, confirm_path, read_sweep_config
from cars.storage import join_path, write_text
from cars.sweep_config import SweepConfig

logger = logging.getLogger(__name__)

# The key of a confirmation trial's config naming the sweep trial whose configuration it repeats.
CONFIRMS = "confirms"
CONFIRMED = (*REPEATED, CONFIRMS)


def draw_confirm_seeds(sweep: SweepConfig, taken: set[int]) -> list[int]:
    """``sweep.confirm`` seeds, reproducible from the sweep's seed, none a sweep trial used."""
    rng = np.random.default_rng([sweep.seed, 2])
    seeds: list[int] = []
    while len(seeds) < sweep.confirm:
        seed = int(rng.integers(0, 2**31 - 1))
        if seed not in taken and seed not in seeds:
            seeds.append(seed)
    return seeds


def select_winners(trials: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each regime's best trial's configuration (the report's choice), by regime."""
    winners = {}
    for row in select_regime_bests(trials).itertuples():
        winners[row.regime] = {
            "lr": float(row.lr),
            "trainable_blocks": int(row.trainable_blocks) if row.regime == "finetune" else None,
            "augment": row.augment,
            CONFIRMS: row.trial_id,
        }
    return winners


@dataclass(frozen=True)
class WinnerValue:
    """One setting of the winning configuration of a confirmation trial's regime."""

    winners: Mapping[str, Mapping[str, Any]]
    key: str

    def __call__(self, config: dict[str, Any]) -> Any:
        return self.winners[config["regime"]][self.key]


def _trial_name(trial: Any) -> str:
    return f"confirm_{trial.config['regime']}_{trial.trial_id}"


def create_confirm_param_space(
    winners: Mapping[str, Mapping[str, Any]], seeds: list[int]
) -> dict[str, Any]:
    """Every winner's configuration with every seed."""
    param_space: dict[str, Any] = {
        "regime": ray.tune.grid_search(list(winners)),
        "seed": ray.tune.grid_search(seeds),
    }
    for key in CONFIRMED:
        param_space[key] = ray.tune.sample_from(WinnerValue(winners, key))
    return param_space


def create_confirm_tuner(
    sweep: SweepConfig,
    resources: TrialResources,
    sweep_path: str,
    winners: Mapping[str, Mapping[str, Any]],
    seeds: list[int],
) -> ray.tune.Tuner:
    """A ``Tuner`` of every winner x every seed, each run to the end, in ``confirm/``."""
    return ray.tune.Tuner(
        create_sweep_trainable(sweep, resources, confirm_path(sweep_path)),
        param_space=create_confirm_param_space(winners, seeds),
        tune_config=ray.tune.TuneConfig(
            metric=BEST_SCORE,
            mode=SCORE_MODE,
            search_alg=BasicVariantGenerator(max_concurrent=resources.max_concurrent_trials),
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=ray.tune.RunConfig(
            name=CONFIRM_DIR,
            storage_path=sweep_path,
            verbose=1,
            failure_config=trial_failure_config(sweep.max_failures, resources),
        ),
    )


def run_confirm(sweep_path: str) -> ray.tune.ResultGrid | None:
    """Run, or resume, the confirmation stage of the finished sweep at ``sweep_path``.

    Returns:
        Tune's results, or ``None`` when the sweep asks for no confirmation or
        no regime has a trial to confirm.
    """
    sweep = read_sweep_config(sweep_path)
    if sweep.confirm == 0:
        return None
    path = confirm_path(sweep_path)
    resources = plan_resources(sweep)
    trials = read_sweep_results(sweep_path).trials
    winners = select_winners(trials)
    if not winners:
        logger.warning("no regime has a trial with a checkpoint: nothing to confirm")
        return None
    seeds = draw_confirm_seeds(sweep, {int(s) for s in trials["seed"].dropna()})
    if ray.tune.Tuner.can_restore(path):
        return restore_tuner(
            path,
            lambda name: create_sweep_trainable(sweep, resources, path, name),
            create_confirm_param_space(winners, seeds),
        ).fit()
    logger.info(
        "confirming %s with seeds %s",
        ", ".join(f"{r} ({w[CONFIRMS]})" for r, w in winners.items()),
        seeds,
    )
    # The experiment reads back like a sweep (cars.report.results) with the sweep's settings.
    write_text(join_path(path, SWEEP_CONFIG_FILE), sweep.to_json())
    return create_confirm_tuner(sweep, resources, sweep_path, winners, seeds).fit()
