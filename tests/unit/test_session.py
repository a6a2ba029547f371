"""A worker group's checkpoints reach storage as the project's own runs write them."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs
import pytest
import ray.train

from cars.cluster.session import upload_checkpoint
from cars.learn.history import HISTORY_FILE, write_history
from cars.runs import read_run
from cars.storage import join_path


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_worker_groups_checkpoint_is_uploaded_whole_where_ray_train_records_it(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    storage = str(tmp_path / "runs") if where == "local" else request.getfixturevalue("s3_bucket")
    run_path = join_path(storage, "sweep", "train-00000")
    local = tmp_path / "written"
    local.mkdir()
    (local / "checkpoint.pt").write_bytes(b"weights of epoch 3")
    write_history(local, [{"epoch": e, "val_acc": 0.5} for e in (1, 2, 3)])

    uploaded = upload_checkpoint(ray.train.Checkpoint.from_directory(str(local)), run_path, 3)

    # Where Ray Train's own copy would have put it, on the filesystem Ray Train builds
    # from the storage path: a checkpoint elsewhere is refused by ray.train.report.
    filesystem, storage_fs_path = pyarrow.fs.FileSystem.from_uri(storage)
    assert uploaded.filesystem.equals(filesystem)
    assert Path(uploaded.path) == Path(storage_fs_path, "sweep", "train-00000", "epoch-0003")
    run = read_run(run_path)
    assert [c.epoch for c in run.checkpoints] == [3]
    assert [m["epoch"] for m in run.history] == [1, 2, 3]
    with uploaded.as_directory() as folder:
        assert (Path(folder) / "checkpoint.pt").read_bytes() == b"weights of epoch 3"
        assert (Path(folder) / HISTORY_FILE).is_file()
