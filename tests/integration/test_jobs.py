"""The jobs run as a user runs them: as scripts, and submitted to a Ray cluster."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from job_runner import job_env, run_job, start_ray_head, stop_ray

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A real head started with `ray start --head`; its jobs API address."""
    try:
        yield start_ray_head()
    finally:
        stop_ray()


def test_smoke_demo_and_its_prediction_submitted_with_the_ray_jobs_cli(
    ray_head: str, tmp_path: Path
) -> None:
    env = job_env(RAY_AUTH_MODE="token")
    refused = subprocess.run(
        ["ray", "job", "list", "--address", ray_head],
        env=job_env(RAY_AUTH_MODE="disabled"), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert refused.returncode != 0, "the cluster accepted a client without its token"

    submitted = subprocess.run(
        [
            "ray", "job", "submit", "--address", ray_head, "--",
            "python", "jobs/sweep.py", "--preset", "smoke", "--name", "submitted",
            "--storage", str(tmp_path / "runs"), "--reports", str(tmp_path / "reports"),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, output[-4000:]
    assert "succeeded" in output
    report = tmp_path / "reports" / "submitted"
    assert f"Report: {report}/summary.md" in output
    trials = pd.read_parquet(report / "trials.parquet")
    assert sorted(trials["regime"]) == ["finetune", "frozen", "scratch"]
    assert set(trials["status"]) == {"finished"}
    summary = (report / "summary.md").read_text()
    assert "standing in for ImageNet" in summary
    assert (tmp_path / "runs" / "submitted" / "sweep.json").is_file()

    # The sweep's best model classifies its test split as a Ray Data job on the same cluster.
    data = json.loads((tmp_path / "runs" / "submitted" / "sweep.json").read_text())["data"]
    predicted = subprocess.run(
        [
            "ray", "job", "submit", "--address", ray_head, "--",
            "python", "jobs/predict.py", "--model", str(report / "best"), "--images", data,
            "--split", "test", "--out", str(tmp_path / "predicted"),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = predicted.stdout + predicted.stderr
    assert predicted.returncode == 0, output[-4000:]
    regimes = pd.read_parquet(report / "regimes.parquet")
    test_acc = regimes.loc[regimes["best_overall"], "test_acc"].iloc[0]
    assert f"accuracy {test_acc:.4f}" in output
    assert f"Predictions: {tmp_path / 'predicted'}/predictions" in output
    rows = pd.read_parquet(tmp_path / "predicted" / "predictions")
    assert len(rows) == regimes.loc[regimes["best_overall"], "test_images"].iloc[0]


def test_train_job_prints_each_epoch_and_where_results_went(
    prepared_set: Path, tmp_path: Path
) -> None:
    done = run_job(
        "train",
        [
            "--data", str(prepared_set), "--regime", "scratch", "--epochs", "2",
            "--image-size", "64", "--batch-size", "8", "--num-workers", "2",
            "--storage", str(tmp_path / "runs"), "--name", "one-run",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert output.count("epoch 1/2") == 1 and output.count("epoch 2/2") == 1
    assert f"Result: {tmp_path / 'runs' / 'one-run'}" in output
    assert "Best checkpoint (val_acc, then val_loss): " in output
    assert (tmp_path / "runs" / "one-run" / "epoch-0002" / "checkpoint.pt").is_file()


@pytest.mark.parametrize(
    ("job", "args", "message"),
    [
        ("sweep", ["--preset", "full"], "pass --data"),
        ("sweep", ["--data", "nowhere"], "does not exist"),
        ("sweep", ["--resume", "--name", "nothing", "--storage", "runs-x"], "no sweep named"),
        ("report", ["--sweep", "nowhere"], "not a sweep of this project"),
        ("train", ["--data", "nowhere"], "does not exist"),
        ("train", ["--data", "x", "--regime", "scratch", "--weights", "imagenet"], "weights="),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    job: str, args: list[str], message: str, tmp_path: Path
) -> None:
    done = run_job(job, args, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
