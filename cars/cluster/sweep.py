"""Ray Tune glue: the search space and the ``Tuner`` of a sweep, and starting or resuming it.

Every trial runs :func:`cars.cluster.trial.train_driver_fn`, Tune's function
trainable (in the trial's own process for one worker, else driving a Ray Train
worker group). Its run is named after the trial id, so a restored sweep resumes
each unfinished trial's run from its last checkpoint. Tune's TensorBoard logger
writes every trial's curves to ``<storage>/<sweep>/<regime>_<trial id>/`` as
the sweep runs (``tensorboard --logdir <storage>/<sweep>``). Where the runs lie
and how they read back is :mod:`cars.runs`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import ray.tune
from ray.tune.logger import TBXLoggerCallback
from ray.tune.search.basic_variant import BasicVariantGenerator

from cars.cluster.resources import TrialResources, plan_trial_resources
from cars.cluster.scheduler import RegimeASHAScheduler, trial_regime
from cars.cluster.trial import (
    TRAINABLE_NAMES,
    create_trainable,
    restore_tuner,
    trial_failure_config,
    trial_train_config,
)
from cars.config import BEST_SCORE, METRIC, MODE, SCORE_MODE
from cars.paths import FEATURES_DIR
from cars.runs import SWEEP_CONFIG_FILE, read_sweep_config
from cars.storage import join_path, write_text
from cars.sweep_config import SweepConfig

logger = logging.getLogger(__name__)

# Tune writes each trial's files (TensorBoard events among them) in a staging
# folder and copies them to the storage at most every sync period, 5 minutes by
# default: too slow to watch a sweep live. The copy is of small files.
LIVE_SYNC_PERIOD_S = 30


# Seeds a trial's learning-rate and depth draws. Tune's own ``loguniform`` cannot
# depend on the regime, so these draws are made here, from a seed Tune draws with
# the sweep's seeded generator (the sweep stays reproducible) apart from ``seed``,
# which seeds initialisation and data order: the two do not determine each other.
SAMPLE_SEED = "sample_seed"


@dataclass(frozen=True)
class LearningRateSampler:
    """Draws a trial's learning rate log-uniformly from its regime's range."""

    lr_ranges: Mapping[str, tuple[float, float]]

    def __call__(self, config: dict[str, Any]) -> float:
        low, high = self.lr_ranges[config["regime"]]
        draw = np.random.default_rng([config[SAMPLE_SEED], 0]).uniform(np.log(low), np.log(high))
        return float(np.exp(draw))


@dataclass(frozen=True)
class DepthSampler:
    """Draws how many blocks a ``finetune`` trial trains; other regimes have no choice."""

    finetune_blocks: tuple[int, ...]

    def __call__(self, config: dict[str, Any]) -> int | None:
        if config["regime"] != "finetune":
            return None
        rng = np.random.default_rng([config[SAMPLE_SEED], 1])
        return int(self.finetune_blocks[rng.integers(len(self.finetune_blocks))])


def create_param_space(sweep: SweepConfig) -> dict[str, Any]:
    """Tune's search space: every regime ``num_samples`` times, with its own draws.

    Only swept values live here, so Tune's table and result configs show
    exactly what differs between trials; the shared settings reach the driver
    through ``tune.with_parameters``.
    """
    return {
        "regime": ray.tune.grid_search(list(sweep.regimes)),
        "seed": ray.tune.randint(0, 2**31 - 1),
        SAMPLE_SEED: ray.tune.randint(0, 2**31 - 1),
        "lr": ray.tune.sample_from(LearningRateSampler(sweep.lr_ranges)),
        "trainable_blocks": ray.tune.sample_from(DepthSampler(sweep.finetune_blocks)),
        "augment": ray.tune.choice(list(sweep.augments)),
    }


def feature_store(sweep: SweepConfig) -> str:
    """Where a sweep keeps the backbone features its frozen trials (and confirmations) share."""
    return join_path(sweep.storage, sweep.name, FEATURES_DIR)


def create_base_config(sweep: SweepConfig, resources: TrialResources) -> dict[str, Any]:
    """The training settings every trial shares, as a plain dict."""
    if sweep.data is None:
        raise ValueError(f"sweep {sweep.name!r} has no data set")
    config = sweep.create_train_config(
        sweep.data,
        "finetune",
        sweep.lr_ranges[sweep.regimes[0]][0],
        sweep.augments[0],
        cpus_per_worker=resources.cpus_per_worker,
    )
    return config.replace(feature_store=feature_store(sweep)).to_dict()


@ray.remote
def _prepare_features_task(loop_config: dict[str, Any]) -> str:
    from cars.cluster.worker import prepare_features

    return prepare_features(loop_config)


def prepare_shared_features(sweep: SweepConfig, resources: TrialResources) -> None:
    """Compute the features the sweep's frozen trials train on once, before they start.

    One trial at a time, the first frozen trial without augmentation computes
    and stores them and the next ones read them. Frozen trials that start side
    by side would each compute them, so there a Ray task with one training
    worker's resources does it first; a sweep with one frozen trial
    (``num_samples=1``) or one trial at a time needs no task. Without
    pretrained weights every trial's backbone is its own, and so are its features.
    """
    shared = (
        sweep.feature_cache
        and sweep.weights is not None
        and "frozen" in sweep.regimes
        and "none" in sweep.augments
    )
    if not shared or min(sweep.num_samples, resources.max_concurrent_trials) < 2:
        return
    draws = {"regime": "frozen", "augment": "none", "seed": sweep.seed, "trainable_blocks": None}
    draws["lr"] = sweep.lr_ranges["frozen"][0]
    config = trial_train_config(draws, create_base_config(sweep, resources))
    task = _prepare_features_task.options(
        num_cpus=resources.cpus_per_worker, num_gpus=1 if resources.use_gpu else 0
    )
    logger.info("frozen trials share one %s", ray.get(task.remote(config.to_dict())))


def _trial_name(trial: Any) -> str:
    return f"{trial_regime(trial.config)}_{trial.trial_id}"


def create_sweep_trainable(
    sweep: SweepConfig, resources: TrialResources, path: str, name: str = TRAINABLE_NAMES[0]
) -> Any:
    """The sweep's trainable (:func:`cars.cluster.trial.create_trainable`), runs in ``path``."""
    return create_trainable(create_base_config(sweep, resources), resources, path, name)


def create_tuner(sweep: SweepConfig, resources: TrialResources) -> ray.tune.Tuner:
    """A ``Tuner`` over the regimes with ASHA early stopping inside each regime."""
    scheduler = RegimeASHAScheduler(
        max_t=sweep.epochs,
        grace_period=sweep.grace_period,
        reduction_factor=sweep.reduction_factor,
        metric=METRIC,
        mode=MODE,
    )
    return ray.tune.Tuner(
        create_sweep_trainable(sweep, resources, join_path(sweep.storage, sweep.name)),
        param_space=create_param_space(sweep),
        tune_config=ray.tune.TuneConfig(
            # Trials rank by their best epoch so far (Tune's progress table and
            # ResultGrid rank by the latest report), as the report ranks them.
            metric=BEST_SCORE,
            mode=SCORE_MODE,
            scheduler=scheduler,
            # The limit goes to the generator itself: Tune ignores
            # TuneConfig.max_concurrent_trials when given a generator instance.
            search_alg=BasicVariantGenerator(
                random_state=sweep.seed, max_concurrent=resources.max_concurrent_trials
            ),
            num_samples=sweep.num_samples,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=ray.tune.RunConfig(
            name=sweep.name,
            storage_path=sweep.storage,
            failure_config=trial_failure_config(sweep.max_failures, resources),
            verbose=1,
            callbacks=[TBXLoggerCallback()],
            sync_config=ray.tune.SyncConfig(sync_period=LIVE_SYNC_PERIOD_S),
        ),
    )


def tensorboard_command(path: str) -> str:
    """The command that shows a sweep's learning curves, one run per trial."""
    return f"tensorboard --logdir {path}"


@dataclass(frozen=True)
class SweepOutcome:
    """Where a sweep went, and Tune's results."""

    path: str
    results: ray.tune.ResultGrid


def plan_resources(sweep: SweepConfig) -> TrialResources:
    """The trial reservation for the connected cluster."""
    return plan_trial_resources(
        ray.cluster_resources(),
        num_workers=sweep.num_workers,
        cpus_per_worker=sweep.cpus_per_worker,
        use_gpu=sweep.use_gpu,
        max_concurrent_trials=sweep.max_concurrent_trials,
    )


def run_sweep(sweep: SweepConfig) -> SweepOutcome:
    """Run a new sweep of ``sweep.data`` on the connected Ray cluster.

    The sweep's config is written next to Tune's state first, so ``--resume``
    needs nothing but the sweep's name.
    """
    path = join_path(sweep.storage, sweep.name)
    resources = plan_resources(sweep)
    logger.info(
        "%d trials, %d at a time, each %d workers x %g CPUs%s",
        sweep.num_trials,
        resources.max_concurrent_trials,
        resources.num_workers,
        resources.cpus_per_worker,
        " + 1 GPU" if resources.use_gpu else "",
    )
    write_text(join_path(path, SWEEP_CONFIG_FILE), sweep.to_json())
    prepare_shared_features(sweep, resources)
    results = create_tuner(sweep, resources).fit()
    return SweepOutcome(path=path, results=results)


def resume_sweep(path: str) -> SweepOutcome:
    """Restore an interrupted sweep: finished trials stay, unfinished ones continue.

    Each unfinished trial starts again and its run, found by name, resumes
    from its last checkpoint. Errored trials resume too, so a
    sweep cut short by a lost node finishes on the next try.
    """
    if not ray.tune.Tuner.can_restore(path):
        raise FileNotFoundError(
            f"no sweep to resume at {path}: it holds no Tune experiment state. "
            "Check --storage and --name, or start a new sweep without --resume."
        )
    sweep = read_sweep_config(path)
    resources = plan_resources(sweep)
    prepare_shared_features(sweep, resources)
    tuner = restore_tuner(
        path,
        lambda name: create_sweep_trainable(sweep, resources, path, name),
        create_param_space(sweep),
    )
    return SweepOutcome(path=path, results=tuner.fit())
