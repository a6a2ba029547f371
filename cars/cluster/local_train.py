"""Ray Train's local mode, made to persist like a worker group: one-worker runs in the caller.

A one-worker Train run otherwise starts a controller actor, a placement group
and a worker process that imports torch and timm again before its first step,
and tears them down after its last report. Ray 2.60's local mode
(``ScalingConfig(num_workers=0)``) runs the training function in the calling
process instead, with the same ``ray.train`` calls, but as it ships it keeps
reports in memory: no checkpoint reaches storage, ``ray.train.get_checkpoint()``
never resumes, and the run's callbacks never hear of a report.

:class:`LocalTorchTrainer` gives local mode Ray Train's own persistence: each
reported checkpoint is uploaded by Train's ``StorageContext`` and registered
with Train's ``CheckpointManager``, which writes the run's snapshot and keeps
``CheckpointConfig.num_to_keep`` as the controller does; a run started again
under the same name resumes from the snapshot's latest checkpoint. The run's
folder is the one a worker group writes, so ``Result.from_path``, the report and
``--resume`` read it unchanged. These classes are Ray Train's internals, as of
Ray 2.60 (``ray/train/v2/_internal/execution``).

:class:`LocalTrainRun` runs such a trainer on a thread and hands its reports
over one at a time, as Tune's function trainables do, for a Tune class
trainable (``ray.train`` refuses to run in a Tune *function* trainable's
process: it raises ``DeprecationWarning`` there).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import ray.train
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import CheckpointManager
from ray.train.v2._internal.execution.local_mode.torch import LocalTorchController
from ray.train.v2._internal.execution.train_fn_utils import (
    LocalTrainFnUtils,
    set_train_fn_utils,
)
from ray.train.v2._internal.execution.training_report import _TrainingReport

# The key under which Tune's ``TuneReportCallback`` passes a report's checkpoint.
CHECKPOINT_PATH_KEY = "checkpoint_path"

ReportHook = Callable[[dict[str, Any], ray.train.Checkpoint | None], None]


class _LocalCheckpointManager(CheckpointManager):
    """Train's checkpoint bookkeeping without the controller's event loop."""

    def _notify(self) -> None:
        # Wakes the controller's waiters on an asyncio condition; a local run has
        # neither a controller nor a running event loop.
        pass


class _PersistentLocalTrainFnUtils(LocalTrainFnUtils):
    """What ``ray.train.report`` and ``get_checkpoint`` do in a persistent local run."""

    def __init__(self, run_config: ray.train.RunConfig, on_report: ReportHook) -> None:
        super().__init__(experiment_name=run_config.name)
        self._storage = run_config.storage_context
        self._checkpoints = _LocalCheckpointManager(run_config.checkpoint_config, self._storage)
        latest = self._checkpoints.latest_checkpoint_result
        self._last_checkpoint = latest.checkpoint if latest else None
        self._on_report = on_report

    def report(
        self,
        metrics: dict[str, Any],
        checkpoint: ray.train.Checkpoint | None = None,
        checkpoint_dir_name: str | None = None,
        **_: Any,
    ) -> None:
        if checkpoint is not None:
            checkpoint = self._storage.persist_current_checkpoint(
                checkpoint,
                checkpoint_dir_name or self._storage.make_default_checkpoint_dir_name(),
            )
            self._checkpoints.register_checkpoint(
                _TrainingReport(checkpoint=checkpoint, metrics=metrics, validation=False)
            )
            self._last_checkpoint = checkpoint
        self._last_metrics = metrics
        self._on_report(metrics, checkpoint)


class _PersistentLocalController(LocalTorchController):
    def __init__(self, run_config: ray.train.RunConfig, on_report: ReportHook) -> None:
        super().__init__(experiment_name=run_config.name)
        self._run_config = run_config
        self._on_report = on_report

    def _set_train_fn_utils(self) -> None:
        set_train_fn_utils(_PersistentLocalTrainFnUtils(self._run_config, self._on_report))


class LocalTorchTrainer(TorchTrainer):
    """A ``TorchTrainer`` that trains in this process and persists like a worker group.

    Args:
        on_report: called after each report is persisted, with the metrics and the
            stored checkpoint (``None`` for a report without one).
        Others: as ``TorchTrainer``; ``scaling_config`` must have ``num_workers=0``.
    """

    def __init__(self, *args: Any, on_report: ReportHook = lambda *_: None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not self.running_in_local_mode:
            raise ValueError("LocalTorchTrainer needs ScalingConfig(num_workers=0)")
        self._on_report = on_report

    def _get_local_controller(self) -> LocalTorchController:
        return _PersistentLocalController(self.run_config, self._on_report)


class _RunStoppedError(Exception):
    """Raised in the training thread when its consumer stops the run."""


_FINISHED = object()


class LocalTrainRun:
    """A local Train run on a thread, handing over one report at a time.

    The training waits after each report until :meth:`next_report` is called
    again, so a run whose consumer stops it (an early-stopping scheduler) trains
    no further epoch.

    Args:
        create_trainer: builds the trainer, given the hook it must call on each report.
    """

    def __init__(self, create_trainer: Callable[[ReportHook], TorchTrainer]) -> None:
        self._reports: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._resume = threading.Semaphore(0)
        self._holding = False
        self._stopping = False
        self._trainer = create_trainer(self._hand_over)
        self._thread = threading.Thread(target=self._run, name="local-train-run", daemon=True)
        self._thread.start()

    def _hand_over(self, metrics: dict[str, Any], checkpoint: ray.train.Checkpoint | None) -> None:
        report = dict(metrics)
        if checkpoint is not None:
            report[CHECKPOINT_PATH_KEY] = checkpoint.path
        self._reports.put(report)
        self._resume.acquire()
        if self._stopping:
            raise _RunStoppedError

    def _run(self) -> None:
        try:
            self._trainer.fit()
        except _RunStoppedError:
            return
        except BaseException as error:  # handed to the consumer, which raises it
            self._reports.put(error)
            return
        self._reports.put(_FINISHED)

    def next_report(self) -> dict[str, Any] | None:
        """The run's next report; ``None`` once it has finished.

        Raises:
            BaseException: whatever the training raised.
        """
        if self._holding:
            self._holding = False
            self._resume.release()
        item = self._reports.get()
        if item is _FINISHED:
            self._thread.join()
            return None
        if isinstance(item, BaseException):
            self._thread.join()
            raise item
        self._holding = True
        return item

    def stop(self, timeout_s: float = 60.0) -> None:
        """End the run at its next report (at once if it waits on one), within ``timeout_s``."""
        self._stopping = True
        self._holding = False
        self._resume.release()
        self._thread.join(timeout_s)
