"""The jobs run as a user runs them: as scripts, and submitted to a Ray cluster."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from job_runner import (
    head_env,
    ray_cli,
    readme_head_commands,
    run_job,
    start_ray_head,
    stop_ray,
)

from cars.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

# What a user reads as a failure, whatever printed it (this project, Ray, or a process
# Ray ended: Python prints an exception it cannot raise as "Exception ignored in ...").
FAILURE_MARKS = ("Traceback", "Exception ignored")


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's home folder that holds no Ray token (nor anything else)."""
    return tmp_path_factory.mktemp("home")


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    """The status and body of a GET, with ``token`` as a bearer token if given."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _ray(args: list[str], env: dict[str, str], **options: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ray_cli(), *args], env=env, capture_output=True, text=True, check=False, **options
    )


@pytest.fixture(scope="class")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A head started as the README says from an empty home: its jobs API address, and the
    home of the user who started it. Stopped once the tests of the class that uses it end,
    before the jobs that start a Ray of their own."""
    home = tmp_path_factory.mktemp("home")
    try:
        yield start_ray_head(home), home
    finally:
        stop_ray()


class TestAHeadStartedAsTheReadmeSays:
    """One head for the tests that use one: a Ray start-up and stop fewer."""

    def test_a_head_started_as_the_readme_says_refuses_a_client_without_its_token(
        self, head: tuple[str, Path]
    ) -> None:
        ray_head, home = head
        # Refused for authentication, not for any other reason: the jobs API says why.
        assert _get(f"{ray_head}/api/jobs/") == (401, "Unauthorized: Missing authentication token")
        token = (home / ".ray" / "auth_token").read_text().strip()
        assert token, "the README's commands wrote an empty token"
        assert _get(f"{ray_head}/api/jobs/", token=f"x{token}") == (
            403,
            "Forbidden: Invalid authentication token",
        )
        # The CLI without RAY_AUTH_MODE=token sends no token, even with one in its home.
        refused = _ray(["job", "list", "--address", ray_head], head_env(home), timeout=120)
        assert refused.returncode != 0
        assert "Missing authentication token" in refused.stdout + refused.stderr

        status, body = _get(f"{ray_head}/api/jobs/", token=token)
        assert status == 200, body
        assert isinstance(json.loads(body), list)
        listed = _ray(
            ["job", "list", "--address", ray_head],
            head_env(home, RAY_AUTH_MODE="token"),
            timeout=120,
        )
        assert listed.returncode == 0, listed.stdout + listed.stderr

    def test_smoke_demo_and_its_prediction_submitted_with_the_ray_jobs_cli(
        self, head: tuple[str, Path], demo_storage: Path, tmp_path: Path
    ) -> None:
        """The smoke demo as a user submits it, its one-worker trials each in its own process
        (as the demo's): a run that succeeds says so without a traceback, whatever printed it."""
        ray_head, home = head
        env = head_env(home, RAY_AUTH_MODE="token")
        submitted = subprocess.run(
            [
                ray_cli(), "job", "submit", "--address", ray_head, "--",
                "python", "jobs/sweep.py", "--preset", "smoke", "--image-size", "32",
                "--num-workers", "1",
                "--name", "submitted", "--storage", str(demo_storage),
                "--reports", str(tmp_path / "reports"),
            ],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        output = submitted.stdout + submitted.stderr
        assert submitted.returncode == 0, output[-4000:]
        assert "succeeded" in output
        for mark in FAILURE_MARKS:
            assert mark not in output, output[-4000:]
        report = tmp_path / "reports" / "submitted"
        assert f"Report: {report}/summary.md" in output
        trials = pd.read_parquet(report / "trials.parquet")
        assert sorted(trials["regime"]) == ["finetune", "frozen", "scratch"]
        assert set(trials["status"]) == {"finished"}
        summary = (report / "summary.md").read_text()
        assert "standing in for ImageNet" in summary
        assert (demo_storage / "submitted" / "sweep.json").is_file()

        # The sweep's best model classifies its test split as a Ray Data job on the same cluster.
        data = json.loads((demo_storage / "submitted" / "sweep.json").read_text())["data"]
        predicted = subprocess.run(
            [
                ray_cli(), "job", "submit", "--address", ray_head, "--",
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


def test_the_readmes_head_does_not_start_open_where_no_token_can_be_made(home: Path) -> None:
    """The README's ``ray start --head`` alone, with no token anywhere, refuses to start."""
    ((env, start),) = [(e, c) for e, c in readme_head_commands() if c[1:3] == ["start", "--head"]]
    try:
        done = _ray(
            [*start[1:], "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"],
            head_env(home, **env), cwd=PROJECT_ROOT, timeout=180,
        )  # fmt: skip
    finally:
        stop_ray()
    assert done.returncode != 0, "a head started without any token"
    assert "authentication token" in (done.stdout + done.stderr).lower()


def test_train_job_prints_each_epoch_and_where_results_went(
    prepared_set: Path, tmp_path: Path
) -> None:
    done = run_job(
        "train",
        [
            "--data", str(prepared_set), "--regime", "scratch", "--epochs", "2",
            "--image-size", "32", "--batch-size", "8", "--num-workers", "2",
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
