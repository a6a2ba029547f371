"""What a prepared set lacks for the report (no val or test images, no labels, no
boxes), said once, in words, with what could therefore not be computed."""

from __future__ import annotations

from cars.data import DatasetInfo

# How many class names a note lists before it only counts them.
NAMES_SHOWN = 5


def missing_test_reason(info: DatasetInfo) -> str | None:
    """Why no test score exists, as a table cell; None when the test labels are known."""
    if info.counts.get("test", 0) == 0:
        return "no test images"
    if not info.has_test_labels:
        return "unknown labels"
    return None


def describe_test_gap(info: DatasetInfo) -> str | None:
    """Why no test score could be computed, as a sentence; None when it could."""
    reason = missing_test_reason(info)
    if reason == "no test images":
        return (
            "The test split is empty (the source has no test images): no test score "
            "could be computed, and no Grad-CAM could be drawn."
        )
    if reason == "unknown labels":
        return (
            "The test split's labels are unknown (Stanford Cars without "
            "`cars_test_annos_withlabels.mat`): no test score could be computed."
        )
    return None


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown + (f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else "")


def describe_data_gaps(info: DatasetInfo) -> list[str]:
    """One note per gap of the prepared set that leaves part of the report uncomputed."""
    notes = []
    if info.counts.get("val", 0) == 0:
        notes.append(
            "the val split is empty (every class too small to hold an image out, or "
            "a val fraction of 0): no trial has a validation score, so no best trial "
            "could be chosen, and nothing was scored on test"
        )
    else:
        per_class = info.class_counts.get("val", ())
        empty = [name for name, n in zip(info.class_names, per_class, strict=False) if n == 0]
        if empty:
            notes.append(
                f"{len(empty)} of {info.num_classes} classes have no val image "
                f"({_names(empty)}): validation accuracy does not measure them"
            )
    test_gap = describe_test_gap(info)
    if test_gap is not None:
        notes.append(test_gap[0].lower() + test_gap[1:].rstrip("."))
    unknown = info.unknown_boxes.get("test", 0)
    if unknown and info.counts.get("test", 0):
        notes.append(
            f"{unknown} of {info.counts['test']} test images have no known box "
            "(see the data set's box findings): Grad-CAM measures skip them"
        )
    return notes


def describe_boxes(info: DatasetInfo, *, bbox_crop: bool) -> list[str]:
    """A bullet on the data set's unknown boxes and what the study did without them."""
    unknown = sum(info.unknown_boxes.values())
    if not unknown:
        return []
    per_split = ", ".join(f"{split} {n:,}" for split, n in info.unknown_boxes.items() if n)
    crop = "`--bbox-crop` used those images whole; " if bbox_crop else ""
    findings = "".join(f" {finding}." for finding in info.box_findings)
    return [
        f"- Bounding boxes unknown for {unknown:,} images ({per_split}):{findings} "
        f"{crop}Grad-CAM measures skip them."
    ]
