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
    notes += _box_gap(info)
    return notes


def _box_gap(info: DatasetInfo) -> list[str]:
    """What the test images' unknown boxes leave uncomputed, if anything."""
    unknown, total = info.unknown_boxes.get("test", 0), info.counts.get("test", 0)
    if not (unknown and total):
        return []
    if not info.has_boxes:
        return [
            f"the data set has no bounding boxes (its {info.layout} copy has none): the "
            "Grad-CAM measures (energy inside the box, pointing game) cannot be computed"
        ]
    if unknown == total:
        return [
            f"{unknown} of {total} test images have no known box (see the data set's box "
            "findings): the Grad-CAM measures cannot be computed"
        ]
    return [
        f"{unknown} of {total} test images have no known box "
        "(see the data set's box findings): Grad-CAM measures skip them"
    ]


def describe_classes(info: DatasetInfo) -> list[str]:
    """A bullet on what the classes are, where the prepared set records it."""
    if not info.class_order:
        return []  # a set prepared before the class order was recorded
    if info.is_stanford_cars:
        return [
            f"- Classes: Stanford Cars' {info.num_classes}, numbered as in the devkit "
            f"(names from {info.class_names_from})."
        ]
    order = "in sorted order" if info.class_order == "sorted" else "as numbered there"
    return [
        f"- Classes: the data set's own {info.num_classes} (from {info.class_names_from}, "
        f"{order}), not Stanford Cars' 196: the reference study's figures below are of "
        "another data set."
    ]


def describe_boxes(info: DatasetInfo, *, bbox_crop: bool) -> list[str]:
    """A bullet on the data set's unknown boxes and what the study did without them."""
    unknown = sum(info.unknown_boxes.values())
    if not unknown:
        return []
    if not info.has_boxes:
        crop = "`--bbox-crop` used the images whole; " if bbox_crop else ""
        return [
            f"- Bounding boxes: none (the {info.layout} copy has none): {crop}"
            "the Grad-CAM measures cannot be computed."
        ]
    per_split = ", ".join(f"{split} {n:,}" for split, n in info.unknown_boxes.items() if n)
    crop = "`--bbox-crop` used those images whole; " if bbox_crop else ""
    findings = "".join(f" {finding}." for finding in info.box_findings)
    return [
        f"- Bounding boxes unknown for {unknown:,} images ({per_split}):{findings} "
        f"{crop}Grad-CAM measures skip them."
    ]
