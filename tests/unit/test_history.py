"""A run's epochs kept with its checkpoints."""

from __future__ import annotations

from pathlib import Path

from cars.learn.history import read_history, write_history

EPOCHS = [{"epoch": 1, "val_acc": 0.25}, {"epoch": 2, "val_acc": 0.5}]


def test_history_round_trips_through_a_folder(tmp_path: Path) -> None:
    write_history(tmp_path, EPOCHS)
    assert read_history(tmp_path) == EPOCHS
    assert read_history(tmp_path / "elsewhere") == []
