"""A run's per-epoch metrics, kept inside every checkpoint.

Tune records a trial's epochs only for the driver that is running: when a
restored sweep restarts a trial, its log starts again at the epoch the Train
run resumes from. Each checkpoint therefore carries the whole curve so far,
and the report reads the curve from the latest checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.fs

from cars.storage import exists, join_path, read_text, write_text

HISTORY_FILE = "history.json"


def write_history(directory: str | Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Write the epochs so far next to a checkpoint."""
    write_text(join_path(str(directory), HISTORY_FILE), json.dumps(list(history), indent=1))


def read_history(directory: str | Path) -> list[dict[str, Any]]:
    """The epochs recorded with a checkpoint; empty for a checkpoint without them."""
    path = join_path(str(directory), HISTORY_FILE)
    if not exists(path):
        return []
    return list(json.loads(read_text(path)))


def read_checkpoint_history(checkpoint: Any) -> list[dict[str, Any]]:
    """The epochs recorded with a Ray Train ``Checkpoint``, wherever it is stored.

    Read through the checkpoint's own filesystem: its ``path`` carries no scheme
    (an S3 checkpoint's is ``bucket/key``), so it is not a local path.
    """
    filesystem: pyarrow.fs.FileSystem = checkpoint.filesystem
    path = f"{checkpoint.path.rstrip('/')}/{HISTORY_FILE}"
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return []
    with filesystem.open_input_stream(path) as f:
        return list(json.loads(f.read().decode()))
