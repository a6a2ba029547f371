"""The main job on S3, as a cloud user runs it, through a killed driver and a lost cluster.

Everything lives on moto's S3 server on 127.0.0.1 (plain ``s3://`` URIs, reached
through the ``AWS_*`` variables): the prepared data set, the starting weights,
the sweep's state and every checkpoint. One sweep goes through both faults in
turn, on a cluster started with ``ray start``: its driver is killed while the
cluster lives on, and the report of the interrupted sweep is written from S3; then
the whole cluster is stopped (the head included) and a fresh one resumes the sweep
from S3 alone. The killed sweep's resumption from a local folder is in test_resume.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest
import timm
from faults import TRAIN_SNAPSHOT_FILE
from job_runner import head_env, job_command, run_job, run_job_here, start_ray_head, stop_ray

from cars.config import TrainConfig
from cars.learn.checkpoint import save_checkpoint
from cars.learn.history import read_history
from cars.learn.optim import create_optimizer
from cars.storage import join_path, read_text

pytestmark = pytest.mark.slow

EPOCHS = 5
WAIT_S = 400
SOURCE_CLASSES = [f"source-{i}" for i in range(4)]


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The home folder of the user who starts the heads and the jobs that join them."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture
def cluster(home: Path) -> Iterator[Callable[[], str]]:
    """Starts a head as the README says; every cluster the test started is stopped at its end."""
    yield lambda: start_ray_head(home)
    stop_ray()


def _files(uri: str, recursive: bool = True) -> dict[str, int]:
    """Every file under ``uri`` with its modification time (ns)."""
    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    infos = filesystem.get_file_info(
        pyarrow.fs.FileSelector(path, allow_not_found=True, recursive=recursive)
    )
    return {
        info.path[len(path) + 1 :]: info.mtime_ns
        for info in infos
        if info.type == pyarrow.fs.FileType.File
    }


def _trial_statuses(sweep: str) -> dict[str, str]:
    """Trial id -> status, as the experiment state Tune last saved to S3 has it."""
    names = _files(sweep, recursive=False)
    states = sorted(name for name in names if name.startswith("experiment_state-"))
    if not states:
        return {}
    try:
        trials = json.loads(read_text(join_path(sweep, states[-1])))["trial_data"]
    except (ValueError, KeyError, OSError):
        return {}  # caught mid-write, or mixing two versions as _train_snapshot says
    return {t["trial_id"]: t["status"] for t in (json.loads(data) for data, _ in trials)}


def _train_snapshot(run: str) -> dict:
    """Ray Train's checkpoint manager snapshot of a Train run on S3 (empty before any report)."""
    try:
        return json.loads(read_text(join_path(run, TRAIN_SNAPSHOT_FILE)))
    except (OSError, ValueError):
        # Not there yet, or read as Ray Train replaced it: pyarrow sizes a read
        # with a HEAD before it GETs the bytes, so a read racing a rewrite can
        # end up with parts of two versions.
        return {}


def _latest_epoch(run: str) -> int:
    """The epoch of the latest checkpoint Ray Train has recorded for a run; 0 before any."""
    latest = _train_snapshot(run).get("latest_checkpoint_result") or {}
    return int(latest.get("metrics", {}).get("epoch", 0))


def _checkpoint_files(files: dict[str, int], recorded: int) -> dict[str, int]:
    """The files of the checkpoints Ray Train had recorded, up to epoch ``recorded``.

    A checkpoint uploaded as the cluster died, but never recorded, is rightly
    written again by the epoch that reruns.
    """
    return {
        name: mtime
        for name, mtime in files.items()
        if name.startswith("epoch-") and int(name.split("/")[0].split("-")[1]) <= recorded
    }


def _wait_for(
    condition: Callable[[], bool], job: subprocess.Popen[bytes], log: Path, what: str
) -> float:
    """Seconds until ``condition`` held, while ``job`` runs."""
    started = time.monotonic()
    while not condition():
        if job.poll() is not None:
            raise AssertionError(f"the job ended before {what}:\n{log.read_text()[-4000:]}")
        if time.monotonic() - started > WAIT_S:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    return time.monotonic() - started


def _start_job(args: list[str], log: Path, home: Path) -> subprocess.Popen[bytes]:
    """The sweep job run by the user whose home is ``home``, joining that user's head."""
    with log.open("w") as out:
        return subprocess.Popen(
            job_command("sweep", args),
            cwd=log.parent,
            env=head_env(home, RAY_AUTH_MODE="token"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill(job: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended with its cluster
        os.killpg(job.pid, signal.SIGKILL)
    job.wait()


def _upload_source_weights(uri: str, tmp_path: Path) -> None:
    """A project checkpoint of a 4-class source model, as the --weights of the sweep."""
    model = timm.create_model("legacy_xception", num_classes=len(SOURCE_CLASSES))
    config = TrainConfig(data="source", regime="scratch", epochs=1)
    local = tmp_path / "source"
    save_checkpoint(
        local,
        model=model,
        optimizer=create_optimizer(model, config),
        scheduler=None,
        epoch=1,
        config=config.to_dict(),
        class_names=SOURCE_CLASSES,
        metrics={"val_acc": 0.5},
    )
    pyarrow.fs.copy_files(str(local), uri)


def test_sweep_on_s3_survives_a_killed_driver_and_a_lost_cluster(
    s3_bucket: str, tmp_path: Path, cluster: Callable[[], str], home: Path
) -> None:
    data = join_path(s3_bucket, "data", "synthetic")
    storage = join_path(s3_bucket, "runs")
    sweep = join_path(storage, "on-s3")
    weights = join_path(s3_bucket, "weights", "source")
    timings: dict[str, float] = {}
    logs = [tmp_path / f"{run}.log" for run in ("first", "second", "third")]

    prepared = run_job_here(
        "prepare",
        [
            "--synthetic", "--out", data, "--num-classes", "4", "--train-per-class", "12",
            "--test-per-class", "4", "--val-fraction", "0.25", "--max-side", "64",
            "--no-progress",
        ],
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert f"prepared data set written to {data}" in prepared.stdout
    assert {"dataset.json", "train.parquet", "val.parquet", "test.parquet"} <= set(_files(data))
    _upload_source_weights(weights, tmp_path)

    args = [
        "--data", data, "--storage", storage, "--name", "on-s3", "--preset", "smoke",
        "--regimes", "frozen", "finetune", "--weights", weights, "--epochs", str(EPOCHS),
        "--image-size", "32", "--no-report",
    ]  # fmt: skip
    cluster()

    # Fault 1: the driver dies once the first trial has finished and the second
    # has recorded an epoch; the cluster lives on.
    def other_trial() -> str | None:
        statuses = _trial_statuses(sweep)
        if len(statuses) != 2 or "TERMINATED" not in statuses.values():
            return None
        return next(t for t, s in statuses.items() if s != "TERMINATED")

    def other_trial_recorded(epoch: int) -> Callable[[], bool]:
        def check() -> bool:
            trial = other_trial()
            return trial is not None and _latest_epoch(join_path(sweep, f"train-{trial}")) >= epoch

        return check

    started = time.monotonic()
    first = _start_job(args, logs[0], home)
    try:
        _wait_for(other_trial_recorded(1), first, logs[0], "the second trial's first epoch")
    finally:
        _kill(first)
    timings["first run"] = time.monotonic() - started
    statuses = _trial_statuses(sweep)
    finished = next(t for t, s in statuses.items() if s == "TERMINATED")
    interrupted = next(t for t, s in statuses.items() if s != "TERMINATED")
    finished_run = join_path(sweep, f"train-{finished}")
    interrupted_run = join_path(sweep, f"train-{interrupted}")
    finished_files = _files(finished_run)
    assert f"epoch-{EPOCHS:04d}/checkpoint.pt" in finished_files
    killed_at = _latest_epoch(interrupted_run)
    assert 1 <= killed_at < EPOCHS - 1, f"the driver was killed after epoch {killed_at}"
    before_resume = _files(interrupted_run)

    # The report of the interrupted sweep is written from what S3 holds, and says which
    # trial is unfinished.
    partial = run_job_here(
        "report",
        ["--sweep", sweep, "--reports", str(tmp_path / "partial"), "--gradcam-images", "2"],
    )
    assert partial.returncode == 0, partial.stdout[-3000:] + partial.stderr[-3000:]
    assert f"missing: trial {interrupted}" in partial.stdout
    trials = pd.read_parquet(tmp_path / "partial" / "on-s3" / "trials.parquet")
    assert trials.set_index("trial_id")["status"].to_dict() == {
        finished: "finished",
        interrupted: "interrupted",
    }
    summary = (tmp_path / "partial" / "on-s3" / "summary.md").read_text()
    assert f"trial {interrupted}" in summary and "is interrupted" in summary

    # Fault 2: the resumed driver's cluster is lost, head included, once the
    # interrupted trial has recorded another epoch.
    resume = ["--resume", "--name", "on-s3", "--storage", storage]
    started = time.monotonic()
    second = _start_job([*resume, "--no-report"], logs[1], home)
    try:
        timings["resume to its next epoch after the driver kill"] = _wait_for(
            other_trial_recorded(killed_at + 1), second, logs[1], "the resumed trial's next epoch"
        )
    finally:
        stop_ray()
        _kill(second)
    timings["second run"] = time.monotonic() - started
    second_log = logs[1].read_text()
    assert f"Resuming the sweep in {sweep}" in second_log, second_log[-3000:]
    lost_at = _latest_epoch(interrupted_run)
    assert killed_at < lost_at < EPOCHS, f"the cluster was lost after epoch {lost_at}"
    before_loss = _files(interrupted_run)

    # A fresh cluster resumes from S3 alone.
    cluster()
    started = time.monotonic()
    third = _start_job([*resume, "--no-report"], logs[2], home)
    try:
        timings["resume to its next epoch after the cluster loss"] = _wait_for(
            other_trial_recorded(lost_at + 1), third, logs[2], "the next epoch on a fresh cluster"
        )
        assert third.wait(timeout=WAIT_S) == 0, logs[2].read_text()[-4000:]
    finally:
        if third.poll() is None:
            _kill(third)
    timings["third run"] = time.monotonic() - started
    stop_ray()

    # The finished trial was not run again: its Train run's files are untouched.
    assert _files(finished_run) == finished_files
    # No epoch of the interrupted trial ran twice: each checkpoint written before a
    # fault is still the one written then (a rerun epoch writes its folder again),
    # and the whole curve is there once.
    after = _files(interrupted_run)
    for recorded, earlier in ((killed_at, before_resume), (lost_at, before_loss)):
        for name, mtime in _checkpoint_files(earlier, recorded).items():
            if name in after:
                assert after[name] == mtime, f"{name} was written again"
    assert f"epoch-{EPOCHS:04d}/checkpoint.pt" in after
    history = read_history(join_path(interrupted_run, f"epoch-{EPOCHS:04d}"))
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    # Ray Train counts every report of a run, across restarts: one per epoch.
    assert _train_snapshot(interrupted_run)["current_report_index"] == EPOCHS

    # The report, from S3; its best checkpoints are read from S3 too.
    reports = tmp_path / "reports"
    started = time.monotonic()
    reported = run_job(
        "report", ["--sweep", sweep, "--reports", str(reports), "--gradcam-images", "2"],
        cwd=tmp_path,
    )  # fmt: skip
    timings["report"] = time.monotonic() - started
    assert reported.returncode == 0, reported.stdout[-3000:] + reported.stderr[-3000:]
    report = reports / "on-s3"
    assert f"Report: {report}/summary.md" in reported.stdout
    trials = pd.read_parquet(report / "trials.parquet").set_index("trial_id")
    assert set(trials["status"]) == {"finished"}
    assert list(trials.loc[interrupted, ["epochs_run"]]) == [EPOCHS]
    assert all(str(c).startswith(f"{sweep}/train-") for c in trials["checkpoint"])
    assert (report / "best" / "model.safetensors").is_file()
    summary = (report / "summary.md").read_text()
    assert weights in summary  # the starting weights, described from their S3 checkpoint

    timings["an epoch of the interrupted trial"] = sum(r["epoch_seconds"] for r in history) / EPOCHS
    print("\n".join(f"{what}: {seconds:.1f} s" for what, seconds in timings.items()))
