"""A run that succeeds says so without a traceback: the smoke sweep, run as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from job_runner import run_job

pytestmark = pytest.mark.slow

# What a user reads as a failure, whatever printed it (this project, Ray, or a process
# Ray ended: Python prints an exception it cannot raise as "Exception ignored in ...").
FAILURE_MARKS = ("Traceback", "Exception ignored")


def test_a_successful_one_worker_smoke_sweep_prints_no_traceback(
    demo_storage: Path, tmp_path: Path
) -> None:
    done = run_job(
        "sweep",
        [
            "--preset", "smoke", "--regimes", "frozen", "scratch", "--num-workers", "1",
            "--epochs", "2", "--image-size", "32", "--name", "clean",
            "--storage", str(demo_storage), "--reports", str(tmp_path / "reports"),
        ],
        cwd=tmp_path,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert f"Report: {tmp_path / 'reports' / 'clean'}/summary.md" in done.stdout
    trials = pd.read_parquet(tmp_path / "reports" / "clean" / "trials.parquet")
    assert sorted(trials["regime"]) == ["frozen", "scratch"]
    assert set(trials["status"]) == {"finished"}
    for mark in FAILURE_MARKS:
        assert mark not in done.stdout, done.stdout[-4000:]
        assert mark not in done.stderr, done.stderr[-4000:]
