"""Ray Train glue: the ``TorchTrainer`` of one run, and the function its workers run.

Tune's trial drivers and Train's controller import this module to build and
unpickle the trainer; they never train, so the model, data and engine (timm,
torchvision, pandas: seconds of imports in every new process) load only in the
workers, from :mod:`cars.cluster.worker`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ray.train
import ray.train.torch

from cars.cluster.local_train import LocalTorchTrainer, ReportHook
from cars.config import SCORE, SCORE_MODE, TrainConfig, selection_score
from cars.storage import exists, join_path, location_of

# Ray Train writes this file into a run's folder at the run's first report.
TRAIN_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train loop run by every worker: train, evaluate, report, checkpoint.

    Args:
        loop_config: ``TrainConfig.to_dict()``; rebuilt and validated by the worker.
    """
    from cars.cluster.worker import run_worker

    run_worker(loop_config)


def create_run_config(
    config: TrainConfig,
    *,
    storage_path: str,
    name: str,
    callbacks: Sequence[Any] = (),
    worker_env: Mapping[str, str] | None = None,
) -> ray.train.RunConfig:
    """Where a run of ``config`` persists, which checkpoints it keeps, how it recovers."""
    return ray.train.RunConfig(
        name=name,
        storage_path=storage_path,
        failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
        checkpoint_config=ray.train.CheckpointConfig(
            num_to_keep=config.checkpoints_to_keep,
            checkpoint_score_attribute=SCORE,
            checkpoint_score_order=SCORE_MODE,
        ),
        callbacks=list(callbacks),
        worker_runtime_env={"env_vars": dict(worker_env)} if worker_env else None,
        logging_config=ray.train.LoggingConfig(log_level="WARNING"),
    )


def create_trainer(
    config: TrainConfig,
    *,
    storage_path: str,
    name: str,
    callbacks: Sequence[Any] = (),
    worker_env: Mapping[str, str] | None = None,
    train_fn: Callable[[dict[str, Any]], None] = train_fn_per_worker,
) -> ray.train.torch.TorchTrainer:
    """A ``TorchTrainer`` for one run of ``config``.

    Args:
        storage_path: where Ray Train persists results and checkpoints (a local
            folder, or ``s3://...`` / a shared mount on a multi-node cluster).
        name: the run's name; a run whose folder already holds a snapshot resumes
            from its latest checkpoint.
        callbacks: Ray Train callbacks, e.g. Tune's ``TuneReportCallback``.
        worker_env: extra environment variables for the training workers.
        train_fn: the function every worker runs with ``config.to_dict()``; tests
            pass one that wraps :func:`train_fn_per_worker` to inject faults.
    """
    resources = {"CPU": config.cpus_per_worker}
    if config.use_gpu:
        resources["GPU"] = 1
    return ray.train.torch.TorchTrainer(
        train_fn,
        train_loop_config=config.to_dict(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=config.use_gpu,
            resources_per_worker=resources,
        ),
        run_config=create_run_config(
            config,
            storage_path=storage_path,
            name=name,
            callbacks=callbacks,
            worker_env=worker_env,
        ),
    )


def create_local_trainer(
    config: TrainConfig,
    *,
    storage_path: str,
    name: str,
    on_report: ReportHook,
    train_fn: Callable[[dict[str, Any]], None] = train_fn_per_worker,
) -> LocalTorchTrainer:
    """A one-worker run of ``config`` that trains in this process (Ray Train's local mode).

    It reports, checkpoints and resumes as :func:`create_trainer`'s run does, in
    the same folder layout. This process must hold the run's CPUs and GPU (a Tune
    trial reserves them), and a crash fails the caller: Train's ``FailureConfig``
    has no worker group to restart, so recovery is the caller's (Tune's own
    ``FailureConfig`` restarts the trial, which resumes from the checkpoint).

    Args:
        on_report: called with each epoch's metrics and its stored checkpoint.
    """
    if config.num_workers != 1:
        raise ValueError(f"a local run has one worker, not num_workers={config.num_workers}")
    return LocalTorchTrainer(
        train_fn,
        train_loop_config=config.to_dict(),
        scaling_config=ray.train.ScalingConfig(num_workers=0),
        run_config=create_run_config(config, storage_path=storage_path, name=name),
        on_report=on_report,
    )


def run_training(
    config: TrainConfig,
    *,
    storage_path: str,
    name: str,
    worker_env: Mapping[str, str] | None = None,
    train_fn: Callable[[dict[str, Any]], None] = train_fn_per_worker,
) -> ray.train.Result:
    """Run one training run on the current Ray cluster and return its result."""
    trainer = create_trainer(
        config, storage_path=storage_path, name=name, worker_env=worker_env, train_fn=train_fn
    )
    return trainer.fit()


def read_train_result(path: str) -> ray.train.Result | None:
    """The result of the Train run stored at ``path``; ``None`` if it never reported.

    A run stopped before its first report (a sweep killed while a trial was
    starting) leaves a folder without Ray Train's snapshot, which
    ``Result.from_path`` refuses to read.
    """
    if not exists(join_path(path, TRAIN_SNAPSHOT_FILE)):
        return None
    return ray.train.Result.from_path(path)


def best_checkpoint(
    result: ray.train.Result,
) -> tuple[ray.train.Checkpoint, dict[str, Any]] | None:
    """The kept checkpoint of a run's best epoch, with its metrics; ``None`` if none is scored.

    "Best" as :func:`cars.config.selection_score` ranks epochs, ties to the later
    epoch, as Ray Train keeps them (``Result.get_best_checkpoint`` takes the earlier).
    """
    kept = result.best_checkpoints or []
    scored = [(c, m) for c, m in kept if not math.isnan(selection_score(m))]
    if not scored:
        return None
    return max(scored, key=lambda cm: (selection_score(cm[1]), cm[1].get("epoch", 0)))


def checkpoint_location(checkpoint: ray.train.Checkpoint) -> str:
    """Where a Ray checkpoint lives, as the project's readers take it: a local path or a URI.

    ``Checkpoint.path`` alone has no scheme (``bucket/key`` on S3).
    """
    return location_of(checkpoint.filesystem, checkpoint.path)
