"""A run's epochs kept with its checkpoints, read wherever the checkpoint is stored."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs
import ray.train

from cars.learn.history import read_checkpoint_history, read_history, write_history

EPOCHS = [{"epoch": 1, "val_acc": 0.25}, {"epoch": 2, "val_acc": 0.5}]


def test_history_round_trips_through_a_folder(tmp_path: Path) -> None:
    write_history(tmp_path, EPOCHS)
    assert read_history(tmp_path) == EPOCHS
    assert read_history(tmp_path / "elsewhere") == []


def test_a_checkpoints_history_is_read_through_its_filesystem(tmp_path: Path) -> None:
    write_history(tmp_path / "runs" / "epoch-0002", EPOCHS)
    # As on S3, the checkpoint's path is no local path: only its filesystem finds it.
    filesystem = pyarrow.fs.SubTreeFileSystem(str(tmp_path), pyarrow.fs.LocalFileSystem())
    checkpoint = ray.train.Checkpoint("runs/epoch-0002", filesystem=filesystem)
    assert not Path(checkpoint.path).exists()
    assert read_checkpoint_history(checkpoint) == EPOCHS
    assert read_checkpoint_history(ray.train.Checkpoint("runs", filesystem=filesystem)) == []
