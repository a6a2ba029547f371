"""The main job on prepared sets that lack a part: no test images, unlabelled test
images, no val images.

One sweep per set, as small as the job allows (one one-epoch trial per regime), of
several regimes, so that the report pairs them. Each sweep job runs its ``main`` on the
session's shared Ray (``run_job_here``): what is tested is what the job makes of the
set, and the jobs as processes are tested in test_jobs.py. The report on each set with
one, two and three regimes is tested without Ray in tests/unit/test_report_degenerate.py.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
from job_runner import run_job, run_job_here

from cars.data import prepare_dataset
from cars.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

LEAN = ["--preset", "smoke", "--weights", "none", "--num-samples", "1", "--finetune-blocks", "1"]
LEAN += ["--image-size", "32", "--num-workers", "1"]
ALL_REGIMES = ["--regimes", "scratch", "frozen", "finetune"]
TWO_REGIMES = ["--regimes", "scratch", "frozen"]


def _sweep(data: Path, name: str, root: Path, *extra: str):
    args = [*LEAN, "--data", str(data), "--name", name, *extra]
    args += ["--storage", str(root / "runs"), "--reports", str(root / "reports")]
    return run_job_here("sweep", args)


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
def no_test_sweep(ray_cluster: None, no_test_set: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("no-test")
    done = _sweep(no_test_set, "no-test", root, "--epochs", "1", *ALL_REGIMES)
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
    assert list(regimes["regime"]) == ["scratch", "frozen", "finetune"]
    assert regimes[["test_loss", "test_acc", "test_top5"]].isna().all(axis=None)
    assert regimes["test_images"].tolist() == [0, 0, 0]
    assert regimes["best_val_acc"].notna().all()
    assert (report / "best").is_dir() and not (report / "gradcam").exists()
    _assert_nothing_compared(report, pairs=3, test_acc="no test images")
    assert "The test split has no labelled image: no test outcomes to compare." in summary


def test_a_failed_report_keeps_the_sweep_and_prints_the_command(no_test_sweep) -> None:
    root, _ = no_test_sweep
    blocked = root / "not-a-folder"
    blocked.write_text("a file where the reports should go")
    args = ["--resume", "--name", "no-test", "--storage", str(root / "runs")]
    done = run_job_here("sweep", [*args, "--reports", str(blocked)])
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
    _assert_nothing_compared(root / "fixed" / "no-test", pairs=3, test_acc="no test images")


def test_a_sweep_without_val_images_completes_and_says_what_it_lacks(
    ray_cluster: None, synthetic_source: Path, tmp_path: Path
) -> None:
    data = tmp_path / "no-val"
    prepare_dataset(synthetic_source, data, val_fraction=0.0, progress=False)
    done = _sweep(data, "no-val", tmp_path, "--epochs", "2", "--grace-period", "1", *TWO_REGIMES)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = tmp_path / "reports" / "no-val"
    trials = pd.read_parquet(report / "trials.parquet")
    assert trials["status"].tolist() == ["finished"] * 2
    assert trials["epochs_run"].tolist() == [2, 2]
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
    why = "has no scored model (no val images to choose its best trial)"
    _assert_nothing_compared(
        report, pairs=1, test_acc=f"scratch {why}", energy_ratio=f"scratch {why}"
    )
    assert f"(test accuracy): not compared, scratch {why}." in summary


def test_a_sweep_with_unlabelled_test_images_compares_what_it_can(
    ray_cluster: None, synthetic_source: Path, tmp_path: Path
) -> None:
    source = tmp_path / "cars"
    shutil.copytree(synthetic_source, source)
    for labels in source.rglob("cars_test_annos_withlabels.mat"):
        labels.unlink()  # the devkit as distributed: test images without their classes
    data = tmp_path / "unlabelled"
    prepare_dataset(source, data, val_fraction=0.25, progress=False)
    done = _sweep(data, "unlabelled", tmp_path, "--epochs", "1", *TWO_REGIMES)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    report = tmp_path / "reports" / "unlabelled"
    regimes = pd.read_parquet(report / "regimes.parquet")
    assert list(regimes["regime"]) == ["scratch", "frozen"]
    assert regimes["test_acc"].isna().all() and regimes["test_images"].eq(0).all()
    predictions = pd.read_parquet(report / "predictions.parquet")
    assert len(predictions) == 2 * 16 and predictions["correct"].isna().all()
    comparisons = pd.read_parquet(report / "comparisons.parquet")
    accuracy = comparisons[comparisons["measure"] == "test_acc"]
    assert accuracy["not_compared"].tolist() == ["no test image has a known label"]
    assert accuracy[["difference", "p_value", "only_a", "only_b"]].isna().all(axis=None)
    assert (report / "gradcam" / "gradcam.parquet").is_file()
    # The pair of regimes, and each against the untrained network.
    assert comparisons["measure"].tolist().count("energy_ratio") == 1 + 2
    summary = (report / "summary.md").read_text()
    assert "The test split's labels are unknown" in summary
    assert "not compared, no test image has a known label." in summary


def _assert_nothing_compared(
    report: Path, *, pairs: int, test_acc: str, energy_ratio: str | None = None
) -> None:
    """``comparisons.parquet`` has a row per pair and measure: nulls, and why."""
    comparisons = pd.read_parquet(report / "comparisons.parquet")
    reasons = {"test_acc": test_acc, "energy_ratio": energy_ratio or "no Grad-CAM was drawn"}
    assert len(comparisons) == 2 * pairs
    for measure, reason in reasons.items():
        rows = comparisons[comparisons["measure"] == measure]
        assert len(rows) == pairs and rows["not_compared"].str.startswith(reason).all()
    figures = ["value_a", "value_b", "difference", "ci_low", "ci_high", "p_value", "only_a"]
    assert comparisons[figures].isna().all(axis=None) and comparisons["images"].eq(0).all()
