"""A sweep whose driver is killed mid-run resumes to completion with --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from faults import TRAIN_SNAPSHOT_FILE, recorded_epoch
from job_runner import job_command, job_env, run_job
from state import wait_for

from cars.report.results import read_sweep_results

pytestmark = pytest.mark.slow

EPOCHS = 5


def _reported_epochs(trial_dir: Path) -> list[int]:
    result = trial_dir / "result.json"
    if not result.exists():
        return []
    return [json.loads(line)["epoch"] for line in result.read_text().splitlines() if line]


def _trial_statuses(sweep_dir: Path) -> dict[str, str]:
    """Trial id -> status, as Tune's last saved experiment state has it."""
    states = sorted(sweep_dir.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        trials = json.loads(states[-1].read_text())["trial_data"]
    except (json.JSONDecodeError, KeyError):
        return {}  # caught mid-write
    return {t["trial_id"]: t["status"] for t in (json.loads(data) for data, _ in trials)}


def test_killed_sweep_resumes_where_it_stopped(prepared_set: Path, tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    sweep_dir = storage / "resumable"
    args = [
        "--data", str(prepared_set), "--preset", "smoke", "--regimes", "frozen", "finetune",
        "--weights", "none",
        "--epochs", str(EPOCHS), "--image-size", "128", "--storage", str(storage),
        "--name", "resumable", "--no-report",
    ]  # fmt: skip
    log = (tmp_path / "first.log").open("w")
    driver = subprocess.Popen(
        job_command("sweep", args),
        cwd=tmp_path,
        env=job_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Kill the driver (and the Ray it started) once the first trial has
        # finished and the second has reported its first epoch.
        def second_trial_started() -> bool:
            statuses = _trial_statuses(sweep_dir)
            if sorted(statuses.values()) != ["RUNNING", "TERMINATED"]:
                return False
            running = next(t for t, status in statuses.items() if status == "RUNNING")
            run = sweep_dir / f"train-{running}"
            checkpoints = {p.name for p in run.glob("epoch-*")}
            # Ray Train records a checkpoint in its snapshot after writing its folder.
            recorded = (run / TRAIN_SNAPSHOT_FILE).exists()
            return recorded and bool(checkpoints) and f"epoch-{EPOCHS:04d}" not in checkpoints

        wait_for(second_trial_started, 300, "the second trial's first epoch")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        log.close()

    finished, interrupted = sorted(sweep_dir.glob("f*_*"), key=lambda d: -len(_reported_epochs(d)))
    finished_rows = _reported_epochs(finished)
    finished_run = sweep_dir / f"train-{finished.name.split('_', 1)[1]}"
    finished_files = {p: p.stat().st_mtime for p in finished_run.rglob("*") if p.is_file()}
    interrupted_run = sweep_dir / f"train-{interrupted.name.split('_', 1)[1]}"
    # The epoch Ray Train recorded, which its worker group resumes after.
    last_epoch = recorded_epoch(interrupted_run)
    assert last_epoch >= 1

    # The report of the interrupted sweep is written from what is there, and says
    # which trial is unfinished.
    reports = tmp_path / "reports"
    partial = run_job(
        "report", ["--sweep", str(sweep_dir), "--reports", str(reports), "--gradcam-images", "2"],
        cwd=tmp_path,
    )  # fmt: skip
    assert partial.returncode == 0, partial.stdout[-3000:] + partial.stderr[-3000:]
    interrupted_id = interrupted.name.split("_", 1)[1]
    assert f"missing: trial {interrupted_id}" in partial.stdout
    trials = pd.read_parquet(reports / "resumable" / "trials.parquet").set_index("trial_id")
    assert trials.loc[interrupted_id, "status"] == "interrupted"
    assert trials.loc[finished.name.split("_", 1)[1], "status"] == "finished"
    summary = (reports / "resumable" / "summary.md").read_text()
    assert f"trial {interrupted_id}" in summary
    assert "is interrupted" in summary

    resumed = run_job(
        "sweep", ["--resume", "--name", "resumable", "--storage", str(storage), "--no-report"],
        cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"Resuming the sweep in {sweep_dir}" in resumed.stdout

    # The finished trial was not run again.
    assert _reported_epochs(finished) == finished_rows == list(range(1, EPOCHS + 1))
    assert {p: p.stat().st_mtime for p in finished_run.rglob("*") if p.is_file()} == (
        finished_files
    )
    # The interrupted trial continued from its checkpoint: Tune's log of the
    # restarted driver begins right after it, and the whole curve is still there.
    # The killed driver's Ray outlives it by a moment and may record one more epoch
    # as it goes down: the trial resumes right after the last epoch recorded, which is
    # at least the one read after the kill, and never from the start.
    after_restore = _reported_epochs(interrupted)
    assert after_restore == list(range(after_restore[0], EPOCHS + 1)), after_restore
    assert last_epoch + 1 <= after_restore[0] <= EPOCHS, (last_epoch, after_restore)
    assert (interrupted_run / f"epoch-{after_restore[0] - 1:04d}").is_dir()
    results = read_sweep_results(str(sweep_dir))
    trial_id = interrupted.name.split("_", 1)[1]
    curve = results.epochs[results.epochs["trial_id"] == trial_id]
    assert list(curve["epoch"]) == list(range(1, EPOCHS + 1))
    assert set(results.trials["status"]) == {"finished"}


def test_a_sweep_killed_before_tune_recorded_a_finished_trial_resumes(
    prepared_set: Path, tmp_path: Path
) -> None:
    """Killed after a trial's Train run ended but before Tune saved it as finished."""
    storage = tmp_path / "runs"
    sweep_dir = storage / "recorded"
    args = [
        "--data", str(prepared_set), "--preset", "smoke", "--regimes", "frozen", "finetune",
        "--weights", "none", "--epochs", "2", "--image-size", "32", "--num-workers", "1",
        "--max-concurrent-trials", "1", "--storage", str(storage), "--name", "recorded",
        "--no-report",
    ]  # fmt: skip
    log = (tmp_path / "first.log").open("w")
    # Tune saves its state every few seconds; saving it less often keeps a
    # periodic save from landing between the run's end and the kill.
    driver = subprocess.Popen(
        job_command("sweep", args),
        cwd=tmp_path,
        env=job_env(TUNE_GLOBAL_CHECKPOINT_S="3600"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def a_train_run_ended() -> bool:
            # The run's last checkpoint is stored; Tune records the trial's end only
            # once the trial has handed it the epoch and returned.
            return any(recorded_epoch(run) == 2 for run in sweep_dir.glob("train-*"))

        wait_for(a_train_run_ended, 300, "the first trial's last epoch")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        log.close()

    finished_run = next(r for r in sweep_dir.glob("train-*") if recorded_epoch(r) == 2)
    finished_id = finished_run.name.split("-", 1)[1]
    finished = next(sweep_dir.glob(f"f*_{finished_id}"))
    assert _trial_statuses(sweep_dir)[finished_id] != "TERMINATED", "Tune recorded the trial"
    assert (finished_run / "epoch-0002").is_dir()
    finished_files = {p: p.stat().st_mtime for p in finished_run.rglob("*") if p.is_file()}

    resumed = run_job(
        "sweep", ["--resume", "--name", "recorded", "--storage", str(storage), "--no-report"],
        cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    # The finished trial handed Tune its recorded epochs without training again.
    assert _trial_statuses(sweep_dir)[finished_id] == "TERMINATED"
    assert _reported_epochs(finished) == [1, 2]
    assert {p: p.stat().st_mtime for p in finished_run.rglob("*") if p.is_file()} == (
        finished_files
    )
    # The other trial ran to its end, and the sweep reads as complete.
    results = read_sweep_results(str(sweep_dir))
    assert set(results.trials["status"]) == {"finished"}
    assert len(results.trials) == 2
    assert results.epochs.groupby("trial_id")["epoch"].apply(list).tolist() == [[1, 2], [1, 2]]
