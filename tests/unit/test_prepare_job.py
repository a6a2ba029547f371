"""``jobs/prepare.py`` run the way a user runs it: a separate process, from another folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from copy_files import official_records, write_class_folders
from stanford_files import record, write_devkit

from cars.data import read_dataset_info
from cars.data.class_order import OFFICIAL_CLASS_NAMES
from cars.paths import PROJECT_ROOT

JOB = PROJECT_ROOT / "jobs" / "prepare.py"


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(JOB), *args, "--no-progress"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_synthetic_set_with_a_path_relative_to_the_project(tmp_path: Path) -> None:
    out = tmp_path / "sets" / "demo"
    relative = os.path.relpath(out, PROJECT_ROOT)  # relative to the project, not to cwd
    args = ["--synthetic", "--out", relative, "--num-classes", "3", "--train-per-class", "4"]
    done = _run(tmp_path, *args, "--test-per-class", "2", "--val-fraction", "0.25")
    assert done.returncode == 0, done.stderr
    assert f"prepared data set written to {out}" in done.stdout
    assert "images: train 9, val 3, test 6" in done.stdout
    assert dict(read_dataset_info(str(out)).counts) == {"train": 9, "val": 3, "test": 6}

    again = _run(tmp_path, *args, "--test-per-class", "2")
    assert again.returncode == 2
    assert again.stderr.startswith("error: ") and "--force" in again.stderr
    assert "Traceback" not in again.stderr


def test_a_source_with_a_missing_image_is_counted_or_with_strict_refused(tmp_path: Path) -> None:
    train = [record(f"{i:05d}.jpg", (1, 1, 40, 30), 1 + i % 2) for i in range(1, 5)]
    test = [record("00001.jpg", (1, 1, 9, 9))]
    source = write_devkit(tmp_path / "cars", ["A", "B"], train, test, test_labels=None)
    (source / "cars_train" / "00003.jpg").unlink()
    strict = _run(tmp_path, "--source", str(source), "--out", str(tmp_path / "s"), "--strict")
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert "error: cars_train/00003.jpg: the annotated image does not exist" in strict.stderr
    assert not (tmp_path / "s").exists()
    done = _run(tmp_path, "--source", str(source), "--out", str(tmp_path / "set"))
    assert done.returncode == 0, done.stderr
    assert "skipped 1: missing_image 1" in done.stdout
    assert "1 test images without labels: no test score" in done.stdout
    assert read_dataset_info(str(tmp_path / "set")).skipped == {"missing_image": 1}


def test_a_folder_of_no_layout_is_an_error_without_a_traceback(tmp_path: Path) -> None:
    done = _run(tmp_path, "--source", str(tmp_path), "--out", str(tmp_path / "set"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "matches no Stanford Cars layout" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_class_folder_copy_is_found_named_and_forced(tmp_path: Path) -> None:
    source = write_class_folders(tmp_path / "kaggle", OFFICIAL_CLASS_NAMES, *official_records())
    out = tmp_path / "set"
    done = _run(tmp_path, "--source", str(source), "--out", str(out), "--name", "cars-kaggle")
    assert done.returncode == 0, done.stderr
    assert (
        "prepared data set 'cars-kaggle' (class_folders layout, found in car_data/car_data, "
        "196 classes)\n  classes: names.csv: Stanford Cars' 196 classes, in the devkit's order"
    ) in done.stdout
    assert read_dataset_info(str(out)).name == "cars-kaggle"
    forced = _run(tmp_path, "--source", str(source), "--out", str(out), "--layout", "devkit")
    assert forced.returncode == 2 and "matches no devkit layout" in forced.stderr


def test_devkit_test_labels_named_on_the_command_line(tmp_path: Path) -> None:
    source = write_devkit(tmp_path / "cars", OFFICIAL_CLASS_NAMES, *official_records())
    labels = tmp_path / "cars_test_annos_withlabels.mat"
    (source / labels.name).rename(labels)
    args = ["--source", str(source), "--out", str(tmp_path / "set")]
    done = _run(tmp_path, *args, "--test-labels", str(labels))
    assert done.returncode == 0, done.stderr
    assert f"test labels from {labels}" in done.stdout and "(test labels known)" in done.stdout
