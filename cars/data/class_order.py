"""One class order for every copy of Stanford Cars: the devkit's 196 names and indices.

A model and a report mean the same classes whatever copy they came from only if
label ``i`` is the same car everywhere. The devkit's ``cars_meta.mat`` fixes that
order; :data:`OFFICIAL_CLASS_NAMES` holds it (``stanford_cars_classes.txt``, the
devkit's ``class_names`` one a line). A copy whose class names are all 196 of
them, whatever order it numbers them in, is renumbered into the devkit's order.

Names are matched as copies spell them: class folders cannot hold a ``/``, so
``Ram C/V Cargo Van Minivan 2012`` is stored as ``Ram C-V Cargo Van Minivan 2012``
(:func:`folder_name`); case and runs of spaces are not told apart either.

Any other set keeps its own classes: in the order its names file numbers them, or,
for bare class folders, in sorted order (as ``torchvision``'s ``ImageFolder``
numbers them), and the copy is said not to be Stanford Cars' 196 classes.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

OFFICIAL_CLASS_NAMES: tuple[str, ...] = tuple(
    resources.files("cars.data").joinpath("stanford_cars_classes.txt").read_text().splitlines()
)
NAMES_SHOWN = 3  # unmatched names a note lists before it only counts them

# How a prepared set's classes are numbered (``dataset.json``'s ``class_order``).
DEVKIT_ORDER = "devkit"  # Stanford Cars' 196 classes, numbered as in cars_meta.mat
SOURCE_ORDER = "source"  # as the copy's own names file numbers them
SORTED_ORDER = "sorted"  # bare class folders of another set: sorted folder names


def folder_name(class_name: str) -> str:
    """The folder a class is stored in: a ``/`` cannot be part of a file name."""
    return class_name.replace("/", "-")


def match_key(name: str) -> str:
    """What two spellings of one class name share (slash rule, case, spacing)."""
    return " ".join(folder_name(name).split()).casefold()


_OFFICIAL_INDEX = {match_key(name): i for i, name in enumerate(OFFICIAL_CLASS_NAMES)}


@dataclass(frozen=True)
class ClassOrder:
    """The classes of a prepared set, and how a copy's labels map onto them."""

    names: tuple[str, ...]
    order: str  # DEVKIT_ORDER, SOURCE_ORDER or SORTED_ORDER
    new_label: np.ndarray  # new_label[copy label] is the prepared label
    note: str  # one line, for a person: what the classes are and why in this order

    @property
    def official(self) -> bool:
        """Whether these are Stanford Cars' 196 classes in the devkit's order."""
        return self.order == DEVKIT_ORDER


def _unmatched_text(unmatched: Sequence[str]) -> str:
    parts = []
    for name in unmatched[:NAMES_SHOWN]:
        close = difflib.get_close_matches(name, OFFICIAL_CLASS_NAMES, n=1, cutoff=0.8)
        parts.append(f"{name!r}" + (f" (closest official name: {close[0]!r})" if close else ""))
    more = len(unmatched) - NAMES_SHOWN
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def order_classes(names: Sequence[str], names_from: str, *, folders: bool) -> ClassOrder:
    """The class order of a copy whose label ``i`` is ``names[i]``.

    Args:
        names: the copy's class names, in its own label order.
        names_from: where they came from, in words (for the note).
        folders: the names are bare folder names (no names file numbered them),
            listed in sorted order.
    """
    matched = [_OFFICIAL_INDEX.get(match_key(name)) for name in names]
    hits = [i for i in matched if i is not None]
    total = len(OFFICIAL_CLASS_NAMES)
    if len(hits) == len(names) == total and len(set(hits)) == total:
        return ClassOrder(
            names=OFFICIAL_CLASS_NAMES,
            order=DEVKIT_ORDER,
            new_label=np.array(hits, dtype=np.int64),
            note=f"{names_from}: Stanford Cars' {total} classes, in the devkit's order",
        )
    order = SORTED_ORDER if folders else SOURCE_ORDER
    how = "in sorted order" if folders else "as numbered there"
    unmatched = [name for name, i in zip(names, matched, strict=True) if i is None]
    if not hits:
        why = "none is a Stanford Cars class name, so these are another data set's classes"
    elif unmatched:
        why = (
            f"{len(hits)} of {len(names)} are Stanford Cars class names, not "
            f"{_unmatched_text(unmatched)}: not Stanford Cars' {total} classes, so the "
            "devkit's order is not used (name each class as the devkit does to get it)"
        )
    else:
        why = (
            f"{len(hits)} of Stanford Cars' {total} classes only, so the devkit's order is not used"
        )
    return ClassOrder(
        names=tuple(names),
        order=order,
        new_label=np.arange(len(names), dtype=np.int64),
        note=f"{names_from}: {len(names)} classes {how}; {why}",
    )
