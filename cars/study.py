"""The main job end to end: data (or the demo's), the sweep or its resumption, the report."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import ray.tune

from cars.cli import ReportError, SweepJob, TrainJob
from cars.config import METRIC, MODE
from cars.confirm import run_confirm
from cars.data import read_dataset_info
from cars.demo import prepare_demo
from cars.model import check_weights
from cars.paths import is_uri
from cars.report import write_report
from cars.runtime import init_ray
from cars.scheduler import trial_regime
from cars.storage import exists, join_path
from cars.sweep import (
    SWEEP_CONFIG_FILE,
    SweepOutcome,
    resume_sweep,
    run_sweep,
    tensorboard_command,
)
from cars.sweep_config import DEMO_SOURCE_WEIGHTS
from cars.train import run_training

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


def summarize_best_trials(results: ray.tune.ResultGrid) -> str:
    """One line per regime: its best trial by best validation accuracy."""
    best: dict[str, tuple[float, str]] = {}
    for result in results:
        if not result.config or result.metrics_dataframe is None:
            continue
        frame = result.metrics_dataframe
        if METRIC not in frame:
            continue
        value = float(frame[METRIC].max() if MODE == "max" else frame[METRIC].min())
        if math.isnan(value):  # an empty val split scores nothing
            continue
        regime = trial_regime(result.config)
        line = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in result.config.items()
            if k != "regime" and v is not None
        )
        if regime not in best or value > best[regime][0]:
            best[regime] = (value, line)
    if not best:
        return f"no trial reported a {METRIC}"
    return "\n".join(
        f"  {regime:<9} best {METRIC} {value:.4f}  ({params})"
        for regime, (value, params) in sorted(best.items())
    )


def run_study(job: SweepJob) -> StudyOutcome:
    """Run (or resume) a sweep and write its report."""
    init_ray()
    if job.resume:
        path = find_sweep(job.storage, job.name)
        print(f"Resuming the sweep in {path}")
        print(f"Live learning curves: {tensorboard_command(path)}", flush=True)
        outcome = resume_sweep(path)
    else:
        assert job.sweep is not None
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
        print(f"Live learning curves: {tensorboard_command(path)}", flush=True)
        if sweep.data is None:
            demo = prepare_demo(sweep)
            print(f"Demo data: {demo.data} (source classes: {demo.source_data})")
            print(f"Pretrained source model: {demo.weights}")
            sweep = sweep.replace(data=demo.data, weights=demo.weights)
        outcome = run_sweep(sweep)
    summary = summarize_best_trials(outcome.results)
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


def run_train_job(job: TrainJob) -> ray.train.Result:
    """One training run without Tune."""
    read_dataset_info(job.config.data)
    if job.config.weights is not None:
        check_weights(job.config.weights)
    init_ray()
    return run_training(job.config, storage_path=job.storage, name=job.name)
