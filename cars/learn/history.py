"""A run's per-epoch metrics, kept inside every checkpoint.

Tune records a trial's epochs only for the driver that is running: when a
restored sweep restarts a trial, its log starts again at the epoch the run
resumes from. Each checkpoint therefore carries the whole curve so far, and the
report reads the curve from the latest checkpoint (:mod:`cars.runs`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cars.learn.checkpoint_files import HISTORY_FILE
from cars.storage import exists, join_path, read_text, write_text


def write_history(directory: str | Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Write the epochs so far next to a checkpoint."""
    write_text(join_path(str(directory), HISTORY_FILE), json.dumps(list(history), indent=1))


def read_history(directory: str | Path) -> list[dict[str, Any]]:
    """The epochs recorded with a checkpoint; empty for a checkpoint without them."""
    path = join_path(str(directory), HISTORY_FILE)
    if not exists(path):
        return []
    return list(json.loads(read_text(path)))
