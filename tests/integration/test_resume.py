"""A sweep whose driver is killed resumes to completion with --resume, from a local folder.

The driver killed mid-trial, on S3 and through a lost cluster, is in test_s3.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from faults import recorded_epoch
from job_runner import job_command, job_env, run_job
from state import wait_for

from cars.report.results import read_sweep_results

pytestmark = pytest.mark.slow


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
