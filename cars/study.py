"""The jobs end to end: data (or the demo's), the sweep or its resumption, the report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cars.cli import ReportError, ReportJob, SweepJob, TrainJob
from cars.cluster.confirm import run_confirm
from cars.cluster.runtime import init_ray
from cars.cluster.sweep import SweepOutcome, resume_sweep, run_sweep, tensorboard_command
from cars.cluster.train import TrainingError, run_training
from cars.config import METRIC
from cars.data import read_dataset_info
from cars.demo import prepare_demo
from cars.learn.model import check_weights
from cars.paths import is_uri
from cars.report import ReportOutcome, write_report
from cars.report.results import SWEPT, read_sweep_results, select_regime_bests
from cars.runs import SWEEP_CONFIG_FILE, StoredRun, read_run, read_sweep_config
from cars.storage import exists, join_path
from cars.sweep_config import DEMO_SOURCE_WEIGHTS

logger = logging.getLogger(__name__)


class SweepNotFoundError(FileNotFoundError):
    """No sweep where ``--resume`` or ``--sweep`` points."""


@dataclass(frozen=True)
class StudyOutcome:
    """Where the sweep and its report went."""

    sweep_path: str
    report_path: str | None
    summary: str


def find_sweep(storage: str, name: str | None) -> str:
    """The sweep folder ``<storage>/<name>``, or the newest sweep in a local ``storage``."""
    if name:
        path = join_path(storage, name)
        if not exists(join_path(path, SWEEP_CONFIG_FILE)):
            raise SweepNotFoundError(
                f"no sweep named {name!r} in {storage} ({SWEEP_CONFIG_FILE} missing); "
                "check --storage and --name"
            )
        return path
    if is_uri(storage):
        raise SweepNotFoundError(f"pass --name to resume a sweep stored at {storage}")
    candidates = sorted(
        Path(storage).glob(f"*/{SWEEP_CONFIG_FILE}"), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        raise SweepNotFoundError(f"no sweep to resume in {storage}; start one without --resume")
    return str(candidates[-1].parent)


def summarize_best_trials(trials: pd.DataFrame) -> str:
    """One line per regime: the trial the report scores (:func:`select_regime_bests`)."""
    lines = []
    for row in select_regime_bests(trials).to_dict("records"):
        drawn = ", ".join(
            f"{k}={row[k]:.3g}" if isinstance(row[k], float) else f"{k}={row[k]}"
            for k in SWEPT
            if k != "regime" and not pd.isna(row[k])
        )
        lines.append(
            f"  {row['regime']:<9} best {METRIC} {row[f'best_{METRIC}']:.4f} "
            f"(epoch {row['best_epoch']})  ({drawn})"
        )
    return "\n".join(lines) or f"no trial reported a {METRIC}"


def run_study(job: SweepJob) -> StudyOutcome:
    """Run (or resume) a sweep and write its report.

    What the job was given is checked before Ray starts, so that a mistake is named in
    seconds rather than after a cluster's start-up.
    """
    if job.resume:
        path = find_sweep(job.storage, job.name)
        init_ray()
        print(f"Resuming the sweep in {path}")
        print(f"Live learning curves: {tensorboard_command(path)}", flush=True)
        outcome = resume_sweep(path)
    elif job.sweep is None:
        raise ValueError("a SweepJob that does not resume needs the sweep's config")
    else:
        sweep = job.sweep
        path = join_path(sweep.storage, sweep.name)
        if exists(path):
            raise FileExistsError(
                f"a sweep named {sweep.name!r} already exists at {path}; pass --resume to "
                "continue it, or choose another --name"
            )
        if sweep.data is not None:
            read_dataset_info(sweep.data)  # a clear error now if it is not a prepared set
        if sweep.weights not in (None, DEMO_SOURCE_WEIGHTS):
            check_weights(sweep.weights)
        init_ray()
        print(f"Live learning curves: {tensorboard_command(path)}", flush=True)
        if sweep.data is None:
            demo = prepare_demo(sweep)
            print(f"Demo data: {demo.data} (source classes: {demo.source_data})")
            print(f"Pretrained source model: {demo.weights}")
            sweep = sweep.replace(data=demo.data, weights=demo.weights)
        outcome = run_sweep(sweep)
    summary = summarize_best_trials(read_sweep_results(outcome.path).trials)
    print(f"\nBest trial of each regime (validation):\n{summary}")
    confirmation = run_confirm(outcome.path)
    if confirmation is not None:
        print(
            f"\nConfirmation: each regime's best configuration trained {len(confirmation)} "
            f"times in all, with fresh seeds ({confirmation.experiment_path})"
        )
    report_path = _write_report(outcome, job) if job.report else None
    return StudyOutcome(sweep_path=outcome.path, report_path=report_path, summary=summary)


def _write_report(outcome: SweepOutcome, job: SweepJob) -> str:
    """Write the report; any failure becomes a :class:`ReportError` naming the way on."""
    try:
        return write_report(outcome.path, job.reports).path
    except Exception as error:  # the sweep's work is done and kept, whatever failed here
        raise ReportError(outcome.path, job.reports, error) from error


@dataclass(frozen=True)
class TrainOutcome:
    """Where a training run went (a folder or a URI), what it stored, and how it ended."""

    path: str
    run: StoredRun
    error: Exception | None


def run_train_job(job: TrainJob) -> TrainOutcome:
    """One training run without Tune."""
    read_dataset_info(job.config.data)
    if job.config.weights is not None:
        check_weights(job.config.weights)
    init_ray()
    path = join_path(job.storage, job.name)
    try:
        run_training(job.config, storage_path=job.storage, name=job.name)
    except TrainingError as error:
        return TrainOutcome(path, read_run(path), error)
    return TrainOutcome(path, read_run(path), None)


def run_report_job(job: ReportJob) -> ReportOutcome:
    """Write a sweep's report; a GPU sweep's test scores run on the cluster's GPUs, joined here."""
    if read_sweep_config(job.sweep).use_gpu:
        init_ray()
    return write_report(job.sweep, job.reports, job.gradcam_images, job.gradcam_measured)
