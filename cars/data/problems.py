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
    # skipped: missing_image, unreadable_image, duplicate;
    # repaired: not_rgb, not_jpeg, bbox_clipped;
    # box_unknown (image and label kept): empty_bbox, inverted_bbox, bbox_mismatch
    kind: str
    detail: str
    action: str  # "skipped", "repaired" or "box_unknown"


class ProblemRecorder:
    """Collects the problems of one preparation; in strict mode the first is an error."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.problems: list[Problem] = []

    def add(self, source_file: str, kind: str, detail: str, action: str) -> None:
        """Record a problem, or raise it as a :class:`DataError` in strict mode."""
        if self.strict:
            would = "kept without its box" if action == "box_unknown" else action
            raise DataError(
                f"{source_file}: {detail} (with --strict every image that would be {would} "
                "is an error; without it, it is counted in dataset.json)"
            )
        self.problems.append(Problem(source_file, kind, detail, action))

    def counts(self, action: str) -> dict[str, int]:
        """Problems per kind, of those ``"skipped"``, ``"repaired"`` or ``"box_unknown"``."""
        return dict(Counter(p.kind for p in self.problems if p.action == action))

    def examples(self) -> list[dict[str, str]]:
        """The first few problems of each kind, as plain dicts for ``dataset.json``."""
        shown: Counter[str] = Counter()
        examples = []
        for p in self.problems:
            shown[p.kind] += 1
            if shown[p.kind] <= EXAMPLES_PER_KIND:
                examples.append(dataclasses.asdict(p))
        return examples
