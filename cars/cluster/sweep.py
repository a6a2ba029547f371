"""Ray Tune glue: the search space, the trial driver and the ``Tuner`` of a sweep.

Each trial is a Tune function trainable, :func:`train_driver_fn`, that builds
and fits a ``TorchTrainer`` whose ``TuneReportCallback`` forwards every epoch's
metrics to Tune (Ray 2.60's Train V2 pattern; ``Tuner(trainer)`` is gone).
The Train run is named after the trial id, so a restored sweep resumes each
unfinished trial's Train run from its last checkpoint. Tune's TensorBoard logger
writes every trial's curves to ``<storage>/<sweep>/<regime>_<trial id>/`` as
the sweep runs (``tensorboard --logdir <storage>/<sweep>``).

A one-worker trial is a :class:`LocalTrial` instead: the same Train run in Ray
Train's local mode, in the trial's own process (:mod:`cars.cluster.local_train`), which
saves the start and end of a controller and a worker group on every trial.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.logger import TBXLoggerCallback
from ray.tune.result import RESULT_DUPLICATE
from ray.tune.search.basic_variant import BasicVariantGenerator

from cars.cluster.local_train import LocalTrainRun
from cars.cluster.resources import TrialResources, plan_trial_resources
from cars.cluster.scheduler import RegimeASHAScheduler, trial_regime
from cars.cluster.train import create_local_trainer, create_trainer, read_train_result
from cars.config import BEST_SCORE, METRIC, MODE, SCORE_MODE, TrainConfig, selection_scores
from cars.learn.history import read_checkpoint_history
from cars.paths import FEATURES_DIR
from cars.storage import exists, join_path, read_text, write_text
from cars.sweep_config import SweepConfig

logger = logging.getLogger(__name__)

SWEEP_CONFIG_FILE = "sweep.json"
# The confirmation stage's Tune experiment, inside the sweep's folder (cars.cluster.confirm).
CONFIRM_DIR = "confirm"
# Tune writes each trial's files (TensorBoard events among them) in a staging
# folder and copies them to the storage at most every sync period, 5 minutes by
# default: too slow to watch a sweep live. The copy is of small files.
LIVE_SYNC_PERIOD_S = 30


def train_run_name(trial_id: str) -> str:
    """The Train run of a trial: deterministic, so that a restored trial resumes it."""
    return f"train-{trial_id}"


def confirm_path(sweep_path: str) -> str:
    """Where a sweep's confirmation experiment and its Train runs live."""
    return join_path(sweep_path, CONFIRM_DIR)


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


def trial_train_config(config: dict[str, Any], base: dict[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` of one trial: the shared settings with its draws."""
    weights = None if config["regime"] == "scratch" else base["weights"]
    draws = {k: v for k, v in config.items() if k != SAMPLE_SEED}
    return TrainConfig.from_dict({**base, **draws, "weights": weights})


def train_driver_fn(config: dict[str, Any], base: dict[str, Any], train_storage: str) -> None:
    """A Tune trial: run one Ray Train run and forward its epochs to Tune.

    Args:
        config: the trial's draws (regime, seed, lr, trainable_blocks, augment).
        base: the shared ``TrainConfig`` fields.
        train_storage: where the sweep's Train runs live.
    """
    trial_id = ray.tune.get_context().get_trial_id()
    train_config = trial_train_config(config, base)
    name = train_run_name(trial_id)
    finished = read_finished_run(join_path(train_storage, name), train_config.epochs)
    if finished is not None:
        # The Train run ended before Tune recorded it (the sweep was stopped in
        # between): fitting again would report nothing, so hand Tune the epochs
        # the run recorded instead of training again.
        for count in range(1, len(finished) + 1):
            ray.tune.report({**finished[count - 1], **selection_scores(finished[:count])})
        return
    trainer = create_trainer(
        train_config,
        storage_path=train_storage,
        name=name,
        callbacks=[TuneReportCallback()],
    )
    trainer.fit()


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


def read_finished_run(path: str, epochs: int) -> list[dict[str, Any]] | None:
    """The epochs of the Train run at ``path`` if it ran all ``epochs``; else ``None``."""
    result = read_train_result(path)
    if result is None or result.checkpoint is None:
        return None
    history = read_checkpoint_history(result.checkpoint)
    if not history or history[-1]["epoch"] < epochs:
        return None
    return history


class LocalTrial(ray.tune.Trainable):
    """A one-worker trial: :func:`train_driver_fn`'s Train run, in the trial's own process.

    A class trainable because ``ray.train`` refuses to run in a function
    trainable's process; each ``step`` hands Tune one epoch of the run.
    """

    def setup(self, config: dict[str, Any], base: dict[str, Any], train_storage: str) -> None:
        train_config = trial_train_config(config, base)
        if not train_config.use_gpu:
            # Ray leaves every GPU visible to a process that reserved none, and
            # local mode trains on the first GPU that CUDA shows.
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        name = train_run_name(self.trial_id)
        self._last: dict[str, Any] | None = None
        self._run: LocalTrainRun | None = None
        # A Train run that ended before Tune recorded it is handed over, not run again.
        self._recorded = read_finished_run(join_path(train_storage, name), train_config.epochs)
        if self._recorded is None:
            self._run = LocalTrainRun(
                lambda on_report: create_local_trainer(
                    train_config, storage_path=train_storage, name=name, on_report=on_report
                )
            )

    def step(self) -> dict[str, Any]:
        if self._run is not None:
            report = self._run.next_report()
        else:
            report = self._recorded.pop(0) if self._recorded else None
        if report is None:
            if self._last is None:
                raise RuntimeError(f"trial {self.trial_id}'s Train run ended without a report")
            # How Tune's function trainables end: the last result again, marked.
            return {**self._last, RESULT_DUPLICATE: True}
        self._last = report
        return dict(report)

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        # The trial's state is its Train run's, stored with every epoch; a
        # restarted trial resumes from there.
        return None

    def load_checkpoint(self, checkpoint: Any) -> None:
        return None

    def cleanup(self) -> None:
        if self._run is not None:
            self._run.stop()


def _trial_name(trial: Any) -> str:
    return f"{trial_regime(trial.config)}_{trial.trial_id}"


def create_trainable(
    sweep: SweepConfig, resources: TrialResources, path: str, driver: Any = train_driver_fn
) -> Any:
    """Tune's trainable with the trials' shared settings, Train runs in ``path``.

    One-worker trials in local mode are a :class:`LocalTrial`; others ``driver``.
    """
    if resources.local_mode:
        driver = LocalTrial
    trial = ray.tune.with_parameters(
        driver, base=create_base_config(sweep, resources), train_storage=path
    )
    return ray.tune.with_resources(trial, resources.trial_reservation())


def trial_max_failures(sweep: SweepConfig, resources: TrialResources) -> int:
    """How often Tune restarts a failed trial.

    A trial in local mode also fails where a worker group would have been
    restarted by Train's ``FailureConfig``, so it gets both budgets.
    """
    if not resources.local_mode or sweep.max_failures < 0:
        return sweep.max_failures
    return 2 * sweep.max_failures


def restore_tuner(path: str, trainable: Any, param_space: dict[str, Any]) -> ray.tune.Tuner:
    """The interrupted Tune experiment at ``path``: unfinished and errored trials continue.

    Tune does not store the search space; without it, trials it had not started
    keep their sampled values as unresolved placeholders and fail.
    """
    return ray.tune.Tuner.restore(
        path,
        trainable=trainable,
        param_space=param_space,
        resume_unfinished=True,
        resume_errored=True,
    )


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
        create_trainable(sweep, resources, join_path(sweep.storage, sweep.name)),
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
            # A trial whose driver (with its Train controller) was on a lost node
            # starts again elsewhere; its Train run resumes from its checkpoint.
            failure_config=ray.tune.FailureConfig(
                max_failures=trial_max_failures(sweep, resources)
            ),
            verbose=1,
            callbacks=[TBXLoggerCallback()],
            sync_config=ray.tune.SyncConfig(sync_period=LIVE_SYNC_PERIOD_S),
            # A class trainable would be saved at its end, by default: an empty
            # Tune checkpoint beside the Train run's.
            checkpoint_config=ray.tune.CheckpointConfig(checkpoint_at_end=False),
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


def read_sweep_config(path: str) -> SweepConfig:
    """The config a sweep was started with."""
    config_path = join_path(path, SWEEP_CONFIG_FILE)
    if not exists(config_path):
        raise FileNotFoundError(
            f"{path} is not a sweep of this project ({SWEEP_CONFIG_FILE} is missing); "
            "pass the sweep's folder, <storage>/<name>, e.g. runs/demo-20260101-120000"
        )
    return SweepConfig.from_dict(json.loads(read_text(config_path)))


def resume_sweep(path: str) -> SweepOutcome:
    """Restore an interrupted sweep: finished trials stay, unfinished ones continue.

    Each unfinished trial's driver starts again and its Train run, found by
    name, resumes from its last checkpoint. Errored trials resume too, so a
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
    trainable = create_trainable(sweep, resources, path)
    tuner = restore_tuner(path, trainable, create_param_space(sweep))
    return SweepOutcome(path=path, results=tuner.fit())
