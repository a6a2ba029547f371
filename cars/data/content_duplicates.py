"""Images stored twice: the same bytes under two names.

Copies of Stanford Cars gather images from many places, and some hold one photo
twice. A second copy adds nothing to training, and one in both splits puts a test
image into training. Of each group of files with the same bytes
(:func:`cars.data.images.content_digest`) one is kept: the first in the test split
if any is there, so the official test split stays whole and training never sees a
test image; otherwise the first. The others are skipped and counted, naming the
file kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DUPLICATE_CONTENT = "duplicate_content"


@dataclass(frozen=True)
class Duplicate:
    """A staged row whose image is another row's."""

    row: int
    same_as: int


def find_content_duplicates(digests: Sequence[str], splits: Sequence[str]) -> list[Duplicate]:
    """The rows to skip, each with the row it repeats, in row order."""
    groups: dict[str, list[int]] = {}
    for row, digest in enumerate(digests):
        groups.setdefault(digest, []).append(row)
    duplicates = []
    for rows in groups.values():
        if len(rows) < 2:
            continue
        keep = next((r for r in rows if splits[r] == "test"), rows[0])
        duplicates += [Duplicate(r, keep) for r in rows if r != keep]
    return sorted(duplicates, key=lambda d: d.row)


def describe_duplicate(
    duplicate: Duplicate,
    source_files: Sequence[str],
    labels: Sequence[int],
    class_names: Sequence[str],
) -> str:
    """Why a row is skipped, for a person: which file it repeats, and any label clash."""
    kept = duplicate.same_as
    detail = f"the same image as {source_files[kept]}, which is kept"
    here, there = labels[duplicate.row], labels[kept]
    if here != there and here >= 0 and there >= 0:
        detail += f" (labelled {class_names[here]!r} here, {class_names[there]!r} there)"
    return detail
