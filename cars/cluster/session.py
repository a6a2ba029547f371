"""Where the worker loop runs: a Ray Train worker, or a Tune trial's own process.

The loop (:func:`cars.cluster.worker.run_worker`) asks a :class:`TrainSession`
for its place (rank, world size, device), for the checkpoint to resume from, to
wrap its model and loader for data parallelism, and to report each epoch with
its checkpoint. Two sessions answer, on Ray's public API only:

- :class:`RayTrainSession`, in a worker of a Ray Train worker group:
  ``ray.train.get_context``, ``get_checkpoint``, ``report`` and
  ``ray.train.torch.prepare_model`` / ``prepare_data_loader``; rank 0 persists
  each checkpoint through ``report``'s ``checkpoint_upload_fn`` as :mod:`cars.runs`
  writes them, and Ray Train records them and keeps
  ``CheckpointConfig.num_to_keep`` of them.
- :class:`ProcessSession`, in a one-worker run's own process (a Tune function
  trainable, where ``ray.train``'s calls refuse to run, or a Ray task): the project
  persists the checkpoints in the same folders (:mod:`cars.runs`), prunes them as
  Ray Train would, resumes from the latest, and in a trial reports to Tune with
  ``ray.tune.report``.

Both pick their device with :func:`cars.cluster.devices.choose_device`.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow.fs
import ray
import ray.train
import ray.train.torch
import ray.tune
import torch
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
from torch.utils.data import DataLoader

from cars.cluster.devices import choose_device
from cars.cluster.signals import end_quietly_on_sigterm
from cars.config import TrainConfig
from cars.learn.device import resolve_loader_workers
from cars.learn.placement import Worker
from cars.paths import is_uri
from cars.runs import checkpoint_dir_name, persist_checkpoint, prune_checkpoints, read_run
from cars.storage import local_copy


class TrainSession(abc.ABC):
    """What the worker loop needs from where it runs."""

    worker: Worker

    @abc.abstractmethod
    @contextmanager
    def checkpoint_to_resume(self) -> Iterator[str | None]:
        """A local folder holding the checkpoint to resume from; ``None`` for a fresh start."""

    def prepare_model(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` ready for data-parallel training (as it is, for one process)."""
        return module

    def prepare_train_loader(self, loader: DataLoader) -> DataLoader:
        """The training loader ready for data-parallel training (as it is, for one process)."""
        return loader

    @abc.abstractmethod
    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, epoch: int) -> None:
        """Report an epoch, with the checkpoint rank 0 wrote in ``checkpoint_dir``.

        Every rank calls it (a barrier in a worker group); ranks other than 0 pass ``None``.
        """


class RayTrainSession(TrainSession):
    """A worker of a Ray Train worker group.

    Args:
        config: the run.
        run_path: the run's folder, ``<storage_path>/<name>`` of its ``RunConfig`` (or a URI).
    """

    def __init__(self, config: TrainConfig, run_path: str) -> None:
        end_quietly_on_sigterm()
        self.run_path = run_path
        context = ray.train.get_context()
        self.device_choice = choose_device(config.use_gpu, in_train_worker=True)
        self.worker = Worker.on(
            self.device_choice.device,
            rank=context.get_world_rank(),
            world_size=context.get_world_size(),
            loader_workers=resolve_loader_workers(config),
        )
        _keep_library_logs_at_warning()

    @contextmanager
    def checkpoint_to_resume(self) -> Iterator[str | None]:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:
            yield directory

    def prepare_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(module)

    def prepare_train_loader(self, loader: DataLoader) -> DataLoader:
        return ray.train.torch.prepare_data_loader(loader)

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, epoch: int) -> None:
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir)
        ray.train.report(
            metrics,
            checkpoint=checkpoint,
            checkpoint_dir_name=checkpoint_dir_name(epoch),
            checkpoint_upload_fn=lambda written, _: upload_checkpoint(
                written, self.run_path, epoch
            ),
        )


def upload_checkpoint(
    checkpoint: ray.train.Checkpoint, run_path: str, epoch: int
) -> ray.train.Checkpoint:
    """Ray Train's upload of rank 0's checkpoint of ``epoch``, done as :mod:`cars.runs` reads runs.

    Ray's own copy writes a folder's files in any order, each under its final name,
    so a job killed mid-upload could leave a history beside a missing or truncated
    ``checkpoint.pt``. :func:`persist_checkpoint` writes each file whole and the
    history last, into the folder Ray Train would use; Ray Train records the
    returned checkpoint (on the run's own filesystem) and prunes it later.
    """
    return ray.train.Checkpoint(persist_checkpoint(checkpoint.path, run_path, epoch))


def _keep_library_logs_at_warning() -> None:
    """Show libraries' warnings from a Train worker, not their INFO lines.

    Ray Train sets a worker's root logger to INFO, and Ray 2.60 echoes every
    ``ray.train.report`` (metrics and checkpoint) at INFO under a logger outside
    ``ray.train``, which ``LoggingConfig(log_level=...)`` does not reach; rank 0's
    epoch line already says what was reported. The project's own loggers log
    warnings only in a worker.
    """
    logging.getLogger().setLevel(logging.WARNING)


class ProcessSession(TrainSession):
    """A one-worker run training in its own process: a Tune trial's, or a Ray task's.

    Args:
        config: the run.
        run_path: the run's folder, e.g. ``<storage>/<sweep>/train-<trial id>`` (or a URI).
        report_to_tune: hand each epoch to Tune (in a trial); a task only persists it.
    """

    def __init__(self, config: TrainConfig, run_path: str, *, report_to_tune: bool) -> None:
        if config.num_workers != 1:
            raise ValueError(
                f"a run trains in its own process with one worker, not {config.num_workers}"
            )
        end_quietly_on_sigterm()
        self.run_path = run_path
        self.report_to_tune = report_to_tune
        self.checkpoints_to_keep = config.checkpoints_to_keep
        self.device_choice = choose_device(config.use_gpu, in_train_worker=False)
        self.worker = Worker.on(
            self.device_choice.device, loader_workers=resolve_loader_workers(config)
        )

    @contextmanager
    def checkpoint_to_resume(self) -> Iterator[str | None]:
        latest = read_run(self.run_path).latest
        if latest is None:
            yield None
            return
        with local_copy(latest.location) as directory:
            yield str(directory)

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, epoch: int) -> None:
        reported = dict(metrics)
        if checkpoint_dir is not None:
            location = persist_checkpoint(checkpoint_dir, self.run_path, epoch)
            prune_checkpoints(read_run(self.run_path), self.checkpoints_to_keep)
            # As Tune's TuneReportCallback passes a worker group's checkpoint: its
            # path on its filesystem (no scheme).
            path = pyarrow.fs.FileSystem.from_uri(location)[1] if is_uri(location) else location
            reported[CHECKPOINT_PATH_KEY] = path
        if self.report_to_tune:
            ray.tune.report(reported)
