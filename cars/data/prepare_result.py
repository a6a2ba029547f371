"""What a preparation made, and its account for a person: what was found, kept and why not."""

from __future__ import annotations

from dataclasses import dataclass

from cars.data.info import SPLITS, DatasetInfo
from cars.data.problems import Problem

# Skip reasons of an image file that was found (the others are records: an
# annotated image that is missing, a record listed twice).
FILE_SKIPS = ("unreadable_image", "not_in_annotations", "duplicate_content")
PROBLEMS_SHOWN = 5


def prepared_from(info: DatasetInfo, split: str) -> int:
    """Images of the copy's ``split`` in the prepared set (train's include ``val``)."""
    if split == "train":
        return info.counts.get("train", 0) + info.counts.get("val", 0)
    return info.counts.get(split, 0)


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))


def _found_line(info: DatasetInfo) -> list[str]:
    """Each split's images found, and what became of them: none is lost silently."""
    if not info.images_found:
        return []
    parts = []
    for split, found in info.images_found.items():
        skipped = {
            kind: n
            for kind, n in info.skipped_by_split.get(split, {}).items()
            if kind in FILE_SKIPS
        }
        part = f"{split} {found} ({prepared_from(info, split)} prepared"
        if skipped:
            part += f"; {sum(skipped.values())} skipped: {_kinds(skipped)}"
        parts.append(part + ")")
    return [f"  images found: {', '.join(parts)}"]


def _box_lines(info: DatasetInfo) -> list[str]:
    lines = [f"  {finding}" for finding in info.box_findings]
    unknown = sum(info.unknown_boxes.values())
    if unknown and info.has_boxes:
        each = ", ".join(f"{split} {n}" for split, n in info.unknown_boxes.items())
        why = _kinds(dict(info.unknown_box_reasons))
        lines.append(
            f"  boxes unknown for {unknown} images ({each}; {why}): "
            "images and labels kept, box stored as null"
        )
    if info.whole_image_boxes:
        lines.append(f"  boxes taken as the whole image: {info.whole_image_boxes}")
    return lines


@dataclass(frozen=True)
class PrepareResult:
    """Where a prepared set went and what it holds (``info`` is its ``dataset.json``)."""

    out: str
    info: DatasetInfo
    problems: tuple[Problem, ...]

    def summary(self) -> str:
        """A few lines for a person: the copy found, counts, what was skipped or repaired."""
        info = self.info
        counts = ", ".join(f"{split} {info.counts[split]}" for split in SPLITS)
        if info.has_test_labels:
            test = "test labels known"
        else:
            test = f"{info.unlabelled_test} test images without labels: no test score"
        where = "" if info.found_at == "." else f", found in {info.found_at}"
        lines = [
            f"prepared data set {info.name!r} ({info.layout} layout{where}, "
            f"{info.num_classes} classes)",
        ]
        if info.class_note:
            lines.append(f"  classes: {info.class_note}")
        if info.boxes_from:
            splits_of: dict[str, list[str]] = {}
            for split, file in info.boxes_from.items():
                splits_of.setdefault(file, []).append(split)
            boxes = ", ".join(f"{file} ({', '.join(s)})" for file, s in splits_of.items())
            lines.append(f"  boxes: {boxes}")
        lines += [f"  {note}" for note in info.notes]
        lines += _found_line(info)
        lines.append(f"  images: {counts} ({test})")
        lines += _box_lines(info)
        for action, kinds in (("skipped", info.skipped), ("repaired", info.repaired)):
            if kinds:
                lines.append(f"  {action} {sum(kinds.values())}: {_kinds(dict(kinds))}")
        lines.append(f"  re-encoded {info.reencoded} images ({info.resized} downscaled)")
        lines += [
            f"  {p.action}: {p.source_file}: {p.detail}" for p in self.problems[:PROBLEMS_SHOWN]
        ]
        return "\n".join(lines)
