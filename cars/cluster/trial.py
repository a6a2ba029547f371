"""One trial path: the Tune function trainable that runs every trial, sweep or confirmation.

:func:`train_driver_fn` runs one trial's run, named after the trial id
(``train-<trial id>``, :mod:`cars.runs`), in one of two places, chosen in one place
(:func:`cars.cluster.resources.trains_in_process`, as ``TrialResources.local_mode``):

- in the trial's own process, for a one-worker run: the worker loop runs in the
  trainable's thread under a :class:`~cars.cluster.session.ProcessSession`, which
  persists each epoch's checkpoint in the run's folder and reports to Tune with
  ``ray.tune.report``. Tune reserves the worker's CPUs and GPU for the trial, and
  no controller, placement group or worker process is started or stopped.
- driving a Ray Train worker group: a ``TorchTrainer`` whose
  ``TuneReportCallback`` forwards every epoch to Tune (Ray 2.60's Train V2
  pattern; ``Tuner(trainer)`` is gone). The driver reserves only memory.

Either way the run's folder is the same, so a restarted or restored trial
resumes from its last checkpoint, and a run that had ended before Tune recorded
it is handed to Tune from storage instead of training again. Tune restarts a
failed trial up to :func:`trial_failure_config`'s budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ray.tune

from cars.cluster.resources import TrialResources
from cars.cluster.signals import end_quietly_on_sigterm
from cars.config import TrainConfig, selection_scores
from cars.runs import read_finished_history, train_run_name
from cars.storage import join_path

_TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))
# The names Tune records an experiment's trainable under, and checks on restore: this
# one's, then those of sweeps written when one-worker trials (a class trainable) and
# confirmations had trainables of their own, which restore onto this one.
TRAINABLE_NAMES = ("train_driver_fn", "LocalTrial", "confirm_driver_fn")


def trial_train_config(config: dict[str, Any], base: dict[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` of one trial: the shared settings with its draws.

    Keys of the trial's config that are no training setting (the draws' seed, the
    trial a confirmation repeats) stay with Tune.
    """
    weights = None if config["regime"] == "scratch" else base["weights"]
    draws = {k: v for k, v in config.items() if k in _TRAIN_FIELDS}
    return TrainConfig.from_dict({**base, **draws, "weights": weights})


def train_driver_fn(
    config: dict[str, Any], base: dict[str, Any], train_storage: str, in_process: bool
) -> None:
    """A Tune trial: train its run and report every epoch to Tune.

    Args:
        config: the trial's draws (regime, seed, lr, trainable_blocks, augment).
        base: the shared ``TrainConfig`` fields.
        train_storage: where the experiment's runs live.
        in_process: train in this process (one worker) rather than a worker group.
    """
    end_quietly_on_sigterm()  # Tune ends the trial's process with a SIGTERM
    trial_id = ray.tune.get_context().get_trial_id()
    train_config = trial_train_config(config, base)
    name = train_run_name(trial_id)
    run_path = join_path(train_storage, name)
    finished = read_finished_history(run_path, train_config.epochs)
    if finished is not None:
        # The run ended before Tune recorded it (the sweep was stopped in between):
        # training again would report nothing, so hand Tune the recorded epochs.
        for count in range(1, len(finished) + 1):
            ray.tune.report({**finished[count - 1], **selection_scores(finished[:count])})
        return
    if in_process:
        # The model, data and engine load only in processes that train.
        from cars.cluster.session import ProcessSession
        from cars.cluster.worker import run_worker

        session = ProcessSession(train_config, run_path, report_to_tune=True)
        run_worker(train_config.to_dict(), session)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    from cars.cluster.train import create_trainer, describe_worker_start, fit_trainer

    trainer = create_trainer(
        train_config, storage_path=train_storage, name=name, callbacks=[TuneReportCallback()]
    )
    print(f"trial {trial_id}: {describe_worker_start(train_config)}", flush=True)
    fit_trainer(trainer, train_config)


def create_trainable(
    base: dict[str, Any], resources: TrialResources, path: str, name: str = TRAINABLE_NAMES[0]
) -> Any:
    """Tune's trainable of an experiment whose runs live in ``path``, with its reservation.

    Args:
        base: the ``TrainConfig`` fields every trial shares.
        name: what Tune calls it (one of :data:`TRAINABLE_NAMES`).
    """

    def trainable(config: dict[str, Any], **parameters: Any) -> None:
        train_driver_fn(config, **parameters)

    trainable.__name__ = trainable.__qualname__ = name
    trial = ray.tune.with_parameters(
        trainable, base=base, train_storage=path, in_process=resources.local_mode
    )
    return ray.tune.with_resources(trial, resources.trial_reservation())


def restore_tuner(
    path: str, trainable_named: Callable[[str], Any], param_space: dict[str, Any]
) -> ray.tune.Tuner:
    """The interrupted Tune experiment at ``path``: unfinished and errored trials continue.

    Tune does not store the search space; without it, trials it had not started
    keep their sampled values as unresolved placeholders and fail. Tune refuses a
    trainable of another name than the one it recorded, so an experiment written
    before trials had one trainable is restored onto this one under its old name.

    Args:
        trainable_named: the experiment's trainable, given the name to give it.
    """
    refused = None
    for name in TRAINABLE_NAMES:
        try:
            return ray.tune.Tuner.restore(
                path,
                trainable=trainable_named(name),
                param_space=param_space,
                resume_unfinished=True,
                resume_errored=True,
            )
        except ValueError as error:
            if "trainable" not in str(error):
                raise
            refused = refused or error
    raise RuntimeError(f"cannot restore the Tune experiment at {path}: {refused}") from refused


def trial_failure_config(max_failures: int, resources: TrialResources) -> ray.tune.FailureConfig:
    """How often Tune restarts a failed trial.

    A trial whose driver (with its Train controller) was on a lost node starts
    again elsewhere and resumes its run from its checkpoint. A trial that trains
    in its own process also fails where a worker group would have been restarted
    by Train's ``FailureConfig``, so it gets both budgets.
    """
    if resources.local_mode and max_failures >= 0:
        max_failures *= 2
    return ray.tune.FailureConfig(max_failures=max_failures)
