"""A run's checkpoints in storage: written whole, pruned as Ray Train prunes, read back without Ray,
on local disk and on S3 (moto's server)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyarrow.fs
import pytest

from cars.learn.history import HISTORY_FILE, write_history
from cars.runs import (
    StoredCheckpoint,
    StoredRun,
    persist_checkpoint,
    prune_checkpoints,
    read_finished_history,
    read_run,
)
from cars.storage import exists, join_path, list_files

# val_acc per epoch; epochs 2 and 4 tie on accuracy, and epoch 4 has the lower loss.
CURVE = [(0.25, 1.5), (0.75, 0.9), (0.5, 0.8), (0.75, 0.6), (0.5, 1.0)]


def _epoch(epoch: int) -> dict[str, float]:
    acc, loss = CURVE[epoch - 1]
    return {"epoch": epoch, "val_acc": acc, "val_loss": loss}


def _write_local_checkpoint(folder: Path, epoch: int) -> Path:
    """What the worker loop writes for an epoch: the checkpoint file and the curve so far."""
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"weights of epoch %d" % epoch)
    write_history(folder, [_epoch(e) for e in range(1, epoch + 1)])
    return folder


def _persist_epochs(tmp_path: Path, run: str, epochs: range, keep: int | None = None) -> None:
    for epoch in epochs:
        local = _write_local_checkpoint(tmp_path / "local" / f"{epoch}", epoch)
        persist_checkpoint(local, run, epoch)
        if keep is not None:
            prune_checkpoints(read_run(run), keep)


@pytest.fixture(params=["local", "s3"])
def run_path(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "sweep" / "train-00000")
    bucket = request.getfixturevalue("s3_bucket")
    return join_path(bucket, f"runs-{tmp_path.name}", "sweep", "train-00000")


def test_a_persisted_run_reads_back_with_its_curve_and_checkpoints(
    run_path: str, tmp_path: Path
) -> None:
    _persist_epochs(tmp_path, run_path, range(1, 4))
    run = read_run(run_path)
    assert [c.epoch for c in run.checkpoints] == [1, 2, 3]
    assert run.checkpoints[0].location == join_path(run_path, "epoch-0001")
    assert run.history == [_epoch(e) for e in (1, 2, 3)]
    assert [c.metrics for c in run.checkpoints] == run.history
    assert run.latest is not None and run.latest.epoch == 3
    assert run.best is not None and run.best.epoch == 2
    assert run.finished(3) and not run.finished(4)
    assert read_finished_history(run_path, 3) == run.history
    assert read_finished_history(run_path, 4) is None
    assert set(list_files(run_path)) == {
        f"epoch-000{e}/{name}" for e in (1, 2, 3) for name in ("checkpoint.pt", HISTORY_FILE)
    }


def test_pruning_keeps_the_best_scores_and_the_latest_as_ray_train_does(
    run_path: str, tmp_path: Path
) -> None:
    _persist_epochs(tmp_path, run_path, range(1, 6), keep=2)
    run = read_run(run_path)
    # The two best (epoch 4 beats epoch 2 on its loss) and the latest, which a resume needs.
    assert [c.epoch for c in run.checkpoints] == [2, 4, 5]
    assert run.best is not None and run.best.epoch == 4
    # A pruned epoch's metrics stay in the curve.
    assert [row["epoch"] for row in run.history] == [1, 2, 3, 4, 5]
    assert not exists(join_path(run_path, "epoch-0001"))


def test_equal_scores_keep_the_later_checkpoint() -> None:
    run = StoredRun(
        "/runs/train-0",
        tuple(
            StoredCheckpoint(f"/runs/train-0/epoch-000{e}", e, {"val_acc": 0.5, "val_loss": 1.0})
            for e in (1, 2, 3)
        ),
        [],
    )
    assert run.best is not None and run.best.epoch == 3


def test_without_a_validation_score_there_is_no_best_checkpoint() -> None:
    nan = {"val_acc": math.nan, "val_loss": math.nan}
    run = StoredRun("/r", (StoredCheckpoint("/r/epoch-0001", 1, {"epoch": 1, **nan}),), [])
    assert run.best is None
    assert run.latest is not None and run.latest.epoch == 1


def test_a_run_that_never_checkpointed_reads_as_empty(run_path: str) -> None:
    run = read_run(run_path)
    assert run.checkpoints == () and run.history == [] and run.latest is None
    assert not run.finished(1)


def test_a_half_written_or_half_deleted_checkpoint_is_no_checkpoint(
    run_path: str, tmp_path: Path
) -> None:
    _persist_epochs(tmp_path, run_path, range(1, 3))
    # A write stopped before its history, or a deletion after it (history goes first);
    # and a copy or a deletion in another order (Ray Train's), stopped with the history
    # there but not the weights...
    partial = _write_local_checkpoint(tmp_path / "partial", 3)
    (partial / HISTORY_FILE).unlink()
    weightless = _write_local_checkpoint(tmp_path / "weightless", 5)
    (weightless / "checkpoint.pt").unlink()
    if "://" in run_path:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(run_path)
        for folder, name in ((partial, "epoch-0003"), (weightless, "epoch-0005")):
            pyarrow.fs.copy_files(str(folder), f"{path}/{name}", destination_filesystem=filesystem)
    else:
        shutil.copytree(partial, Path(run_path, "epoch-0003"))
        shutil.copytree(weightless, Path(run_path, "epoch-0005"))
        # ...and a local write staged beside its final name.
        staged = _write_local_checkpoint(Path(run_path) / ".epoch-0004.partial-1234", 4)
        assert (staged / HISTORY_FILE).is_file()
    run = read_run(run_path)
    assert [c.epoch for c in run.checkpoints] == [1, 2]
    assert run.history[-1]["epoch"] == 2


def test_a_folder_without_a_history_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=HISTORY_FILE):
        persist_checkpoint(tmp_path / "empty", str(tmp_path / "run"), 1)


def test_a_local_checkpoint_appears_whole(tmp_path: Path) -> None:
    # Persisting twice (an epoch trained again after a crash) replaces the folder at once.
    run = str(tmp_path / "run")
    _persist_epochs(tmp_path, run, range(1, 2))
    again = _write_local_checkpoint(tmp_path / "again", 1)
    (again / "checkpoint.pt").write_bytes(b"retrained")
    persist_checkpoint(again, run, 1)
    assert (tmp_path / "run" / "epoch-0001" / "checkpoint.pt").read_bytes() == b"retrained"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["epoch-0001"]
    assert json.loads((tmp_path / "run" / "epoch-0001" / HISTORY_FILE).read_text()) == [_epoch(1)]


def test_an_upload_cut_short_leaves_no_checkpoint_on_s3(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = join_path(s3_bucket, "cut-short", "train-00000")
    _persist_epochs(tmp_path, run, range(1, 2))
    local = _write_local_checkpoint(tmp_path / "local-2", 2)
    copy = shutil.copyfile

    def dies_on_the_weights(source: Path, target: Path) -> None:
        if Path(source).name == "checkpoint.pt":
            raise ConnectionError("the node was lost mid-upload")
        copy(source, target)

    monkeypatch.setattr("cars.runs.shutil.copyfile", dies_on_the_weights)
    with pytest.raises(ConnectionError):
        persist_checkpoint(local, run, 2)
    # Whatever order the files would otherwise go in, the history goes last.
    assert [c.epoch for c in read_run(run).checkpoints] == [1]
