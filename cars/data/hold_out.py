"""The ``val`` split: a stratified hold-out of the official training images."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _hold_out_rank(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()


def split_train_val(
    labels: np.ndarray, val_fraction: float, seed: int, keys: Sequence[str] | None = None
) -> np.ndarray:
    """A stratified hold-out: a boolean mask of the rows that go to ``val``.

    Each class gives ``round(n * val_fraction)`` images, at least one when the
    fraction is above 0 and the class has two or more, and always keeps one for
    training. Within a class, images are ranked by a hash of the seed and their
    key (the source file; by default the row's place in its class), so one
    class's hold-out does not change when an image of another class is skipped
    or added.
    """
    is_val = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        n = len(rows)
        take = int(np.floor(n * val_fraction + 0.5))
        take = min(max(take, 1 if val_fraction > 0 else 0), n - 1)
        names = [keys[r] for r in rows] if keys is not None else [str(i) for i in range(n)]
        ranked = sorted(range(n), key=lambda i: _hold_out_rank(seed, names[i]))
        is_val[rows[ranked[:take]]] = True
    return is_val


def assign_splits(
    splits: Sequence[str],
    labels: Sequence[int],
    keys: Sequence[str],
    dropped: np.ndarray,
    *,
    val_fraction: float,
    seed: int,
) -> np.ndarray:
    """Each staged row's prepared split: its copy's split, ``val`` for the hold-out,
    ``""`` for a dropped row."""
    splits_array = np.array(splits, dtype=object)
    destinations = np.where(dropped, "", splits_array).astype(object)
    train_rows = np.flatnonzero((splits_array == "train") & ~dropped)
    train_labels = np.asarray(labels, dtype=np.int64)[train_rows]
    is_val = split_train_val(train_labels, val_fraction, seed, [keys[r] for r in train_rows])
    destinations[train_rows[is_val]] = "val"
    return destinations
