"""One training run without Tune: a Ray Train ``TorchTrainer``, or one worker in a Ray task.

A run of several workers is a ``TorchTrainer`` whose workers run
:func:`train_fn_per_worker`; a one-worker run
(:func:`cars.cluster.resources.trains_in_process`) is a Ray task that runs the
same loop in its own process, as a sweep's one-worker trials do, without a
controller and a worker group to start and stop. Both write the same run folder
(:mod:`cars.runs`), and both restart a crashed run from its last checkpoint up to
``TrainConfig.max_failures`` times.

Tune's trial drivers and Train's controller import this module to build and
unpickle the trainer; they never train, so the model, data and engine (timm,
torchvision, pandas: seconds of imports in every new process) load only in the
processes that train, from :mod:`cars.cluster.worker`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import ray
import ray.train
import ray.train.torch

from cars.cluster.resources import trains_in_process
from cars.config import SCORE, SCORE_MODE, TrainConfig
from cars.runs import StoredRun, read_run
from cars.storage import join_path

# Read by Ray Train's controller, which the process that fits a trainer passes them to.
WORKER_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
HEALTH_CHECK_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
# How often the controller polls its workers (Ray's default: every 2 s). A worker's
# report waits in a queue of one until the controller's next poll takes the one
# before it, and the run's end is seen at a poll too: at 2 s a short run loses about
# a second an epoch and seconds at its start and end, at 0.5 s a quarter of that; a
# poll is one small call per worker. A value the user exported wins.
HEALTH_CHECK_INTERVAL_S = "0.5"


class TrainingError(RuntimeError):
    """A training run failed more often than its failure budget allows."""


class WorkerStartError(TrainingError):
    """A run's workers could not be placed on the cluster within the tries it allows."""


def train_fn_per_worker(loop_config: dict[str, Any], *, run_path: str) -> None:
    """The Ray Train loop run by every worker: train, evaluate, report, checkpoint.

    Args:
        loop_config: ``TrainConfig.to_dict()``; rebuilt and validated by the worker.
        run_path: the run's folder, where rank 0 persists its checkpoints.
    """
    from cars.cluster.session import RayTrainSession
    from cars.cluster.worker import run_worker

    run_worker(loop_config, RayTrainSession(TrainConfig.from_dict(loop_config), run_path))


def create_scaling_config(config: TrainConfig) -> ray.train.ScalingConfig:
    """The worker group of a run of ``config``: its workers, each with its CPUs and GPU."""
    resources = {"CPU": config.cpus_per_worker}
    if config.use_gpu:
        resources["GPU"] = 1
    return ray.train.ScalingConfig(
        num_workers=config.num_workers, use_gpu=config.use_gpu, resources_per_worker=resources
    )


def create_run_config(
    config: TrainConfig, *, storage_path: str, name: str, callbacks: Sequence[Any] = ()
) -> ray.train.RunConfig:
    """Where a run of ``config`` persists, which checkpoints it keeps, how it recovers."""
    return ray.train.RunConfig(
        name=name,
        storage_path=storage_path,
        # Each start of the worker group that times out is one controller failure.
        failure_config=ray.train.FailureConfig(
            max_failures=config.max_failures,
            controller_failure_limit=config.worker_start_tries - 1,
        ),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=config.checkpoints_to_keep,
            checkpoint_score_attribute=SCORE,
            checkpoint_score_order=SCORE_MODE,
        ),
        callbacks=list(callbacks),
        logging_config=ray.train.LoggingConfig(log_level="WARNING"),
    )


def create_trainer(
    config: TrainConfig, *, storage_path: str, name: str, callbacks: Sequence[Any] = ()
) -> ray.train.torch.TorchTrainer:
    """A ``TorchTrainer`` for one run of ``config``, to be fit in this process.

    Each try to start its workers waits ``config.worker_start_timeout_s`` (Ray
    Train's controller reads it from this process's environment when the trainer
    is fit), and the run fails after ``config.worker_start_tries`` tries.

    Args:
        storage_path: where Ray Train persists results and checkpoints (a local
            folder, or ``s3://...`` / a shared mount on a multi-node cluster).
        name: the run's name; a run whose folder already holds a snapshot resumes
            from its latest checkpoint.
        callbacks: Ray Train callbacks, e.g. Tune's ``TuneReportCallback``.
    """
    os.environ[WORKER_START_TIMEOUT_ENV] = str(config.worker_start_timeout_s)
    os.environ.setdefault(HEALTH_CHECK_INTERVAL_ENV, HEALTH_CHECK_INTERVAL_S)
    return ray.train.torch.TorchTrainer(
        functools.partial(train_fn_per_worker, run_path=join_path(storage_path, name)),
        train_loop_config=config.to_dict(),
        scaling_config=create_scaling_config(config),
        run_config=create_run_config(
            config, storage_path=storage_path, name=name, callbacks=callbacks
        ),
    )


def describe_worker_start(config: TrainConfig) -> str:
    """What a run of several workers waits for as it starts, and for how long."""
    resources = create_scaling_config(config).resources_per_worker
    each = ", ".join(f"{amount:g} {name}" for name, amount in resources.items())
    return (
        f"starting {config.num_workers} training workers ({each} each): waiting up to "
        f"{config.worker_start_timeout_s:.0f} s for the cluster to place them, "
        f"{config.worker_start_tries} tries"
    )


def fit_trainer(trainer: ray.train.torch.TorchTrainer, config: TrainConfig) -> ray.train.Result:
    """Fit a trainer of ``config``; a run whose workers never started fails saying so.

    Raises:
        WorkerStartError: every try to place the workers timed out.
        ray.train.TrainingFailedError: the run failed otherwise.
    """
    try:
        return trainer.fit()
    except ray.train.ControllerError as error:
        raise WorkerStartError(
            f"the run's {config.num_workers} workers did not start: "
            f"{config.worker_start_tries} tries of {config.worker_start_timeout_s:.0f} s each "
            f"found no room for them ({error.controller_failure}). Free the cluster's "
            "resources (another job may hold them), ask for fewer (--num-workers, "
            "--cpus-per-worker), or wait longer (--worker-start-timeout-s, "
            "--worker-start-tries)"
        ) from error


@ray.remote
def _train_in_process(loop_config: dict[str, Any], run_path: str) -> None:
    from cars.cluster.session import ProcessSession
    from cars.cluster.worker import run_worker

    session = ProcessSession(TrainConfig.from_dict(loop_config), run_path, report_to_tune=False)
    run_worker(loop_config, session)


def run_training(config: TrainConfig, *, storage_path: str, name: str) -> StoredRun:
    """Run one training run on the current Ray cluster; what it stored at ``storage_path/name``.

    A run whose folder already holds checkpoints resumes from its latest.

    Raises:
        TrainingError: the run failed ``config.max_failures`` times over.
    """
    run_path = join_path(storage_path, name)
    try:
        if trains_in_process(config.num_workers):
            task = _train_in_process.options(
                num_cpus=config.cpus_per_worker,
                num_gpus=1 if config.use_gpu else 0,
                max_retries=config.max_failures,
                retry_exceptions=True,
            )
            ray.get(task.remote(config.to_dict(), run_path))
        else:
            print(describe_worker_start(config), flush=True)
            fit_trainer(create_trainer(config, storage_path=storage_path, name=name), config)
    except (ray.exceptions.RayError, ray.train.TrainingFailedError) as error:
        raise TrainingError(f"the run {run_path} failed: {error}") from error
    return read_run(run_path)
