"""The images a preparation skipped or repaired, and why."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from cars.data.errors import DataError

EXAMPLES_PER_KIND = 10


@dataclass(frozen=True)
class Problem:
    """One image skipped, repaired or kept without its box, and why."""

    source_file: str
    # skipped: missing_image, unreadable_image, duplicate (listed twice),
    # duplicate_content (the same bytes as another image), not_in_annotations;
    # repaired: not_rgb, not_jpeg, bbox_clipped;
    # box_unknown (image and label kept): empty_bbox, inverted_bbox, bbox_mismatch,
    # bbox_missing (not in the copy's box file), label_conflict (its box line names
    # another class)
    kind: str
    detail: str
    action: str  # "skipped", "repaired" or "box_unknown"
    split: str = ""  # the copy's split (train or test) the image belongs to


class ProblemRecorder:
    """Collects the problems of one preparation; in strict mode the first is an error."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.problems: list[Problem] = []

    def add(self, source_file: str, kind: str, detail: str, action: str, split: str = "") -> None:
        """Record a problem, or raise it as a :class:`DataError` in strict mode."""
        if self.strict:
            would = "kept without its box" if action == "box_unknown" else action
            raise DataError(
                f"{source_file}: {detail} (with --strict every image that would be {would} "
                "is an error; without it, it is counted in dataset.json)"
            )
        self.problems.append(Problem(source_file, kind, detail, action, split))

    def counts(self, action: str) -> dict[str, int]:
        """Problems per kind, of those ``"skipped"``, ``"repaired"`` or ``"box_unknown"``."""
        return dict(Counter(p.kind for p in self.problems if p.action == action))

    def counts_by_split(self, action: str) -> dict[str, dict[str, int]]:
        """Problems per split and kind, of those with ``action``."""
        by_split: dict[str, Counter[str]] = {}
        for p in self.problems:
            if p.action == action:
                by_split.setdefault(p.split, Counter())[p.kind] += 1
        return {split: dict(kinds) for split, kinds in by_split.items()}

    def examples(self) -> list[dict[str, str]]:
        """The first few problems of each kind, as plain dicts for ``dataset.json``."""
        shown: Counter[str] = Counter()
        examples = []
        for p in self.problems:
            shown[p.kind] += 1
            if shown[p.kind] <= EXAMPLES_PER_KIND:
                examples.append(dataclasses.asdict(p))
        return examples
