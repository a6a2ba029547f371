"""Which layout a copy is in, and where: at the folder the user named or a few below it.

Copies are often wrapped in folders by whoever zipped them and whoever unzipped
them (``archive/car_data/car_data/train/...``), so the folders are searched
breadth first, :data:`MAX_DEPTH` levels deep, and the shallowest folder that
holds a whole layout is the copy. Two copies at that depth are an error (which
one was meant?); one folder holding two layouts is read in the order of
:data:`LAYOUTS` (the devkit's boxes and names first), and the other is named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cars.data.errors import DataError
from cars.data.layouts import all_in_one, class_folders, devkit, hf_parquet
from cars.data.layouts.listing import found_at, subfolders

MAX_DEPTH = 4
MAX_FOLDERS = 20_000  # searched before giving up: the user named a folder far too high
_PARTIALS_SHOWN = 3


@dataclass(frozen=True)
class Layout:
    """A layout: what it needs, for a person, and how to tell a folder lacks it."""

    name: str
    needs: tuple[str, ...]
    description: str
    missing: Callable[[Path, Path], list[str]]


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(devkit.NAME, devkit.NEEDS, devkit.DESCRIPTION, devkit.missing),
        Layout(all_in_one.NAME, all_in_one.NEEDS, all_in_one.DESCRIPTION, all_in_one.missing),
        Layout(
            class_folders.NAME,
            class_folders.NEEDS,
            class_folders.DESCRIPTION,
            class_folders.missing,
        ),
        Layout(hf_parquet.NAME, hf_parquet.NEEDS, hf_parquet.DESCRIPTION, hf_parquet.missing),
    )
}


@dataclass(frozen=True)
class FoundLayout:
    """Where a copy's layout was found; ``also``: other layouts the same folder holds."""

    name: str
    folder: Path
    also: tuple[str, ...] = ()


def check_source(source: str | Path) -> Path:
    """The folder a user named, resolved; an error naming it when it is not a folder."""
    path = Path(source)
    if not path.exists():
        raise DataError(f"source folder {path} does not exist; pass the Stanford Cars folder")
    if not path.is_dir():
        raise DataError(f"source {path} is not a folder; pass the Stanford Cars folder")
    return path.resolve()


def find_layout(source: Path, layout: str | None = None) -> FoundLayout:
    """The shallowest folder of ``source`` holding a whole layout (``layout``, if given).

    Raises:
        DataError: no folder holds one (listing what each layout needs and what
            the closest folders lack), or two folders at the same depth do.
    """
    if layout is not None and layout not in LAYOUTS:
        raise DataError(f"layout={layout!r} is not valid: one of {', '.join(LAYOUTS)}")
    wanted = [layout] if layout else list(LAYOUTS)
    level, partial, searched = [source], [], 1
    for _ in range(MAX_DEPTH + 1):
        hits = []
        for folder in level:
            lacks = {name: LAYOUTS[name].missing(folder, source) for name in wanted}
            whole = [name for name, missing in lacks.items() if not missing]
            if whole:
                hits.append(FoundLayout(whole[0], folder, tuple(whole[1:])))
            partial += [
                (folder, name, missing)
                for name, missing in lacks.items()
                if missing and len(missing) < len(LAYOUTS[name].needs) and folder != source
            ]
        if len(hits) > 1:
            each = "; ".join(f"{found_at(h.folder, source)} ({h.name})" for h in hits)
            raise DataError(
                f"{source} holds several copies at the same depth: {each}; "
                "point --source at the one to prepare"
            )
        if hits:
            return hits[0]
        level = [child for folder in level for child in subfolders(folder)]
        searched += len(level)
        if searched > MAX_FOLDERS:
            raise DataError(
                f"{source} holds more than {MAX_FOLDERS:,} folders within {MAX_DEPTH} levels and "
                "no copy near its top; point --source at the copy's own folder"
            )
    raise DataError(_nothing_found(source, wanted, partial))


def _nothing_found(source: Path, wanted: list[str], partial: list) -> str:
    expected = "; ".join(
        f"{name}: {LAYOUTS[name].description} "
        f"(missing {', '.join(LAYOUTS[name].missing(source, source))})"
        for name in wanted
    )
    closest = "".join(
        f" In {found_at(folder, source)}: the {name} layout lacks {', '.join(missing)}."
        for folder, name, missing in partial[:_PARTIALS_SHOWN]
    )
    kind = f"{wanted[0]} layout" if len(wanted) == 1 else "Stanford Cars layout"
    return (
        f"{source} matches no {kind}, at its top or in the folders below it "
        f"({MAX_DEPTH} levels deep). Expected one of - {expected}.{closest} "
        "Point --source at the folder that holds these files, or use --synthetic."
    )
