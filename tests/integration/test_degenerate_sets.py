"""The main job on prepared sets that lack a part: no test images, no val images.

Each sweep is as small as the job allows (one frozen trial); the jobs run as a
user runs them, each in its own process with its own Ray.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
from job_runner import run_job

from cars.data import prepare_dataset
from cars.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

LEAN = ["--preset", "smoke", "--weights", "none", "--regimes", "frozen", "--num-samples", "1"]
LEAN += ["--image-size", "32", "--num-workers", "1"]


def _sweep(data: Path, name: str, root: Path, *extra: str):
    args = [*LEAN, "--data", str(data), "--name", name, *extra]
    args += ["--storage", str(root / "runs"), "--reports", str(root / "reports")]
    return run_job("sweep", args, cwd=root)


@pytest.fixture(scope="module")
def no_test_set(synthetic_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny set as a user with only ``cars_train/`` and its annotations has it."""
    source = tmp_path_factory.mktemp("only-train") / "cars"
    shutil.copytree(synthetic_source, source)
    shutil.rmtree(source / "cars_test")
    for test_part in source.rglob("cars_test_annos*.mat"):
        test_part.unlink()
    out = source.parent / "prepared"
    result = prepare_dataset(source, out, val_fraction=0.25, progress=False)
    assert result.info.counts == {"train": 36, "val": 12, "test": 0}
    assert not result.info.skipped
    return out


@pytest.fixture(scope="module")
def no_test_sweep(no_test_set: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("no-test")
    done = _sweep(no_test_set, "no-test", root, "--epochs", "1")
    return root, done


def test_a_sweep_without_test_images_writes_its_report(no_test_sweep) -> None:
    root, done = no_test_sweep
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    report = root / "reports" / "no-test"
    assert f"Report: {report}/summary.md" in done.stdout
    summary = (report / "summary.md").read_text()
    assert "The test split is empty (the source has no test images)" in summary
    assert "| no test images | no test images |" in summary
    assert "No Grad-CAM: the test split has no images." in summary
    regimes = pd.read_parquet(report / "regimes.parquet")
    assert list(regimes["regime"]) == ["frozen"]
    assert regimes[["test_loss", "test_acc", "test_top5"]].isna().all(axis=None)
    assert regimes["test_images"].tolist() == [0]
    assert regimes["best_val_acc"].notna().all()
    assert (report / "best").is_dir() and not (report / "gradcam").exists()


def test_a_failed_report_keeps_the_sweep_and_prints_the_command(no_test_sweep) -> None:
    root, _ = no_test_sweep
    blocked = root / "not-a-folder"
    blocked.write_text("a file where the reports should go")
    args = ["--resume", "--name", "no-test", "--storage", str(root / "runs")]
    done = run_job("sweep", [*args, "--reports", str(blocked)], cwd=root)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the report step failed: FileExistsError" in errors[0]
    sweep = root / "runs" / "no-test"
    assert f"The sweep's results are intact at {sweep}." in done.stderr
    command = done.stderr.strip().splitlines()[-1].strip()
    assert command == f"python jobs/report.py --sweep {sweep} --reports {blocked}"
    # The printed command, with the cause fixed, writes the report.
    fixed = [*shlex.split(command)[2:-1], str(root / "fixed")]
    rerun = run_job("report", fixed, cwd=PROJECT_ROOT)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert (root / "fixed" / "no-test" / "summary.md").is_file()


def test_a_sweep_without_val_images_completes_and_says_what_it_lacks(
    synthetic_source: Path, tmp_path: Path
) -> None:
    data = tmp_path / "no-val"
    prepare_dataset(synthetic_source, data, val_fraction=0.0, progress=False)
    done = _sweep(data, "no-val", tmp_path, "--epochs", "2", "--grace-period", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = tmp_path / "reports" / "no-val"
    trials = pd.read_parquet(report / "trials.parquet")
    assert trials["status"].tolist() == ["finished"] and trials["epochs_run"].tolist() == [2]
    assert trials[["best_val_acc", "best_val_loss", "best_epoch"]].isna().all(axis=None)
    assert trials["last_train_loss"].notna().all()
    epochs = pd.read_parquet(report / "epochs.parquet")
    assert epochs["val_acc"].isna().all() and epochs["train_acc"].notna().all()
    summary = (report / "summary.md").read_text()
    assert "the val split is empty" in summary
    assert "no best trial could be chosen" in summary
    assert "No trial has a checkpoint yet" not in summary
    assert "no trial reported a val_acc: no learning curves" in summary
    assert not (report / "curves.png").exists()
