"""Where a sweep's runs lie in storage, and how to write and read their checkpoints.

A sweep lives in ``<storage>/<name>/`` (a folder or a URI)::

    sweep.json                  the SweepConfig it started with (SWEEP_CONFIG_FILE)
    <regime>_<trial id>/        Tune's record of a trial (result.json, TensorBoard events)
    train-<trial id>/           the trial's run (train_run_name)
        epoch-0003/             a checkpoint: checkpoint.pt and history.json
    features/                   backbone features the frozen trials share
    confirm/                    the confirmation stage, laid out as a sweep (CONFIRM_DIR)

A run is written by a trial that trains in its own process (:func:`persist_checkpoint`,
:func:`prune_checkpoints`) or by a Ray Train worker group (Ray Train persists the same
folders, with a snapshot of its own beside them); either way it is read here by
listing its checkpoint folders, so neither the report nor a resume needs Ray, and
sweeps written before trials trained in their own process read the same.

A checkpoint exists once its folder holds both ``checkpoint.pt`` and ``history.json``,
each written whole (renamed into place, or one object on an object store), the
history last; the project deletes the history first. A folder caught half-written
(a job killed during an upload) or half-deleted (Ray Train pruning it in any order)
is never taken for one.
Every epoch's metrics live in each checkpoint's history, so a run's curve is whole
in its latest checkpoint. Ray-free at import: only :func:`read_trials`, which reads
Tune's own record of an experiment, needs Ray installed (not running).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cars.config import selection_score
from cars.learn.checkpoint_files import CHECKPOINT_FILE, HISTORY_FILE
from cars.learn.history import read_history
from cars.paths import is_uri
from cars.storage import atomic_path, exists, join_path, list_files, read_text, remove
from cars.sweep_config import SweepConfig

if TYPE_CHECKING:
    import pandas as pd

SWEEP_CONFIG_FILE = "sweep.json"
# The confirmation stage's Tune experiment, inside the sweep's folder (cars.cluster.confirm).
CONFIRM_DIR = "confirm"
_CHECKPOINT_DIR = re.compile(r"epoch-(\d{4,})")


def train_run_name(trial_id: str) -> str:
    """The run of a trial: deterministic, so that a restarted or restored trial resumes it."""
    return f"train-{trial_id}"


def confirm_path(sweep_path: str) -> str:
    """Where a sweep's confirmation experiment and its runs live."""
    return join_path(sweep_path, CONFIRM_DIR)


def checkpoint_dir_name(epoch: int) -> str:
    """The folder of a run's checkpoint of ``epoch``, e.g. ``epoch-0003``."""
    return f"epoch-{epoch:04d}"


def read_sweep_config(path: str) -> SweepConfig:
    """The config a sweep was started with."""
    config_path = join_path(path, SWEEP_CONFIG_FILE)
    if not exists(config_path):
        raise FileNotFoundError(
            f"{path} is not a sweep of this project ({SWEEP_CONFIG_FILE} is missing); "
            "pass the sweep's folder, <storage>/<name>, e.g. runs/demo-20260101-120000"
        )
    return SweepConfig.from_dict(json.loads(read_text(config_path)))


@dataclass(frozen=True)
class TrialRecord:
    """What Tune recorded of a trial: its id, status and config, and its reports in order."""

    trial_id: str
    status: str
    config: dict[str, Any]
    results: pd.DataFrame | None


def read_trials(path: str) -> list[TrialRecord]:
    """Every trial of the Tune experiment at ``path`` (a sweep or its confirmation), by id.

    Tune's experiment state is Tune's format, read through its public reader. A
    restored trial's reports start where its run resumed (see :class:`StoredRun`).
    """
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(path)
    frames = analysis.trial_dataframes
    return [
        TrialRecord(t.trial_id, t.status, dict(t.config), frames.get(t.trial_id))
        for t in sorted(analysis.trials, key=lambda t: t.trial_id)
    ]


@dataclass(frozen=True)
class StoredCheckpoint:
    """A complete checkpoint of a run: where it is (a path or a URI) and its epoch's metrics."""

    location: str
    epoch: int
    metrics: Mapping[str, Any]


@dataclass(frozen=True)
class StoredRun:
    """What a run left in storage: its complete checkpoints, oldest first, and its curve."""

    path: str
    checkpoints: tuple[StoredCheckpoint, ...]
    history: list[dict[str, Any]]

    @property
    def latest(self) -> StoredCheckpoint | None:
        """The checkpoint a resumed run continues from; ``None`` before the first."""
        return self.checkpoints[-1] if self.checkpoints else None

    @property
    def best(self) -> StoredCheckpoint | None:
        """The kept checkpoint of the run's best epoch; ``None`` if none has a validation score.

        "Best" as :func:`cars.config.selection_score` ranks epochs, ties to the later epoch.
        """
        scored = [c for c in self.checkpoints if not math.isnan(selection_score(c.metrics))]
        if not scored:
            return None
        return max(scored, key=lambda c: (selection_score(c.metrics), c.epoch))

    def finished(self, epochs: int) -> bool:
        """Whether the run has trained all ``epochs``."""
        return bool(self.history) and self.history[-1]["epoch"] >= epochs


def read_run(path: str) -> StoredRun:
    """The run stored at ``path`` (a folder or a URI); empty if it never checkpointed."""
    files = set(list_files(path))
    epochs = sorted(
        int(match.group(1))
        for name in files
        if (match := _CHECKPOINT_DIR.fullmatch(name.split("/")[0]))
        and name == f"{match.group(0)}/{HISTORY_FILE}"
        and f"{match.group(0)}/{CHECKPOINT_FILE}" in files
    )
    if not epochs:
        return StoredRun(path, (), [])
    history = read_history(join_path(path, checkpoint_dir_name(epochs[-1])))
    by_epoch = {int(m["epoch"]): m for m in history}
    checkpoints = []
    for epoch in epochs:
        location = join_path(path, checkpoint_dir_name(epoch))
        # An older checkpoint's epoch is in the latest history, unless a restart
        # resumed from before it; its own history then has its metrics.
        metrics = by_epoch.get(epoch) or read_history(location)[-1]
        checkpoints.append(StoredCheckpoint(location, epoch, metrics))
    return StoredRun(path, tuple(checkpoints), history)


def read_finished_history(path: str, epochs: int) -> list[dict[str, Any]] | None:
    """The epochs of the run at ``path`` if it trained all ``epochs``; else ``None``."""
    run = read_run(path)
    return run.history if run.finished(epochs) else None


def persist_checkpoint(directory: str | Path, run_path: str, epoch: int) -> str:
    """Store the checkpoint in the local ``directory`` as the run's checkpoint of ``epoch``.

    Locally the whole folder appears at once (written beside, then renamed); on an
    object store each file is uploaded whole, ``history.json`` last. Returns where it went.
    """
    source = Path(directory)
    target = join_path(run_path, checkpoint_dir_name(epoch))
    if not (source / HISTORY_FILE).is_file():
        raise FileNotFoundError(f"{source} holds no {HISTORY_FILE}: not a run's checkpoint")
    if not is_uri(target):
        with atomic_path(target) as staged:
            shutil.copytree(source, staged)
        return target
    files = sorted(p for p in source.rglob("*") if p.is_file())
    for file in sorted(files, key=lambda p: p.name == HISTORY_FILE):
        with atomic_path(join_path(target, file.relative_to(source).as_posix())) as staged:
            shutil.copyfile(file, staged)
    return target


def _rank(checkpoint: StoredCheckpoint) -> tuple[float, int]:
    score = selection_score(checkpoint.metrics)
    return (-math.inf if math.isnan(score) else score, checkpoint.epoch)


def prune_checkpoints(run: StoredRun, keep: int) -> list[str]:
    """Delete all but the ``keep`` best checkpoints of ``run`` and its latest; return those gone.

    What Ray Train's ``CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=SCORE)``
    keeps: the highest scores, the later of equal ones, and always the latest, which a
    resumed run continues from.
    """
    if run.latest is None:
        return []
    kept = {c.epoch for c in sorted(run.checkpoints, key=_rank)[-keep:]} | {run.latest.epoch}
    deleted = []
    for checkpoint in run.checkpoints:
        if checkpoint.epoch not in kept:
            remove(join_path(checkpoint.location, HISTORY_FILE))
            remove(checkpoint.location)
            deleted.append(checkpoint.location)
    return deleted
