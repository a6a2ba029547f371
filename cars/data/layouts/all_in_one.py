"""The all-in-one layout: ``car_ims/`` (possibly ``car_ims/car_ims/``) and ``cars_annos.mat``.

``cars_annos.mat`` lists every image of both splits (``relative_im_path``, the
box, ``class``, ``test``) and holds ``class_names``.
"""

from __future__ import annotations

from pathlib import Path

from cars.data.errors import DataError
from cars.data.layouts.devkit import label_of
from cars.data.layouts.listing import (
    BBOX_FIELDS,
    NOT_IN_ANNOTATIONS,
    FileImages,
    Issue,
    SourceCopy,
    build_records,
    devkit_box,
    found_at,
    list_image_files,
    relative_name,
)
from cars.data.matfiles import read_cell_strings, read_struct_records

NAME = "all_in_one"
ANNOS = "cars_annos.mat"
NEEDS = (ANNOS, "car_ims/")
DESCRIPTION = ", ".join(NEEDS)
UNSPLIT = "unknown"  # the split of an image that no record lists


def missing(folder: Path, source: Path) -> list[str]:
    """What ``folder`` lacks of the layout (nothing: it is an all-in-one copy)."""
    del source  # both files lie in the layout's own folder
    return [
        need
        for need in NEEDS
        if not ((folder / need).is_dir() if need.endswith("/") else (folder / need).is_file())
    ]


def read_all_in_one(folder: Path, source: Path) -> SourceCopy:
    """Read the all-in-one copy in ``folder`` (``source``: the folder the user named)."""
    if missing(folder, source):
        raise DataError(f"{folder} is not an all-in-one copy: it needs {DESCRIPTION}")
    file = folder / ANNOS
    class_names = read_cell_strings(file, "class_names")
    images = folder / "car_ims"
    nested = (images / "car_ims").is_dir()
    on_disk = {
        relative_name(f, source) for f in list_image_files(images / "car_ims" if nested else images)
    }
    fields = [*BBOX_FIELDS, "class", "test", "relative_im_path"]
    rows = []
    for i, record in enumerate(read_struct_records(file, "annotations", fields), start=1):
        path = str(record["relative_im_path"]).replace("\\", "/")
        if nested and path.startswith("car_ims/"):
            path = f"car_ims/{path}"
        rows.append(
            {
                "source_file": relative_name(folder / path, source),
                "split": "test" if record["test"] else "train",
                "label": label_of(record["class"], file, i, len(class_names)),
            }
            | devkit_box(record)
        )
    listed = {row["source_file"]: row["split"] for row in rows}
    found = {"train": 0, "test": 0}
    for name, split in listed.items():
        found[split] += name in on_disk
    issues = [
        Issue(name, UNSPLIT, NOT_IN_ANNOTATIONS, f"not listed in {ANNOS}", "skipped")
        for name in sorted(on_disk - listed.keys())
    ]
    if issues:
        found[UNSPLIT] = len(issues)
    return SourceCopy(
        layout=NAME,
        source=source,
        found_at=found_at(folder, source),
        records=build_records(rows),
        class_names=tuple(class_names),
        names_from=relative_name(file, source),
        folder_names=False,
        boxes_from={"train": relative_name(file, source), "test": relative_name(file, source)},
        found=found,
        images=FileImages(source),
        issues=tuple(issues),
    )
