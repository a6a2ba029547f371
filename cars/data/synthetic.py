"""Writing a synthetic Stanford Cars folder (devkit layout) of drawn cars, and
preparing it as a data set.

The folder has the real data set's files and ``.mat`` structures, test labels
included (``cars_test_annos_withlabels.mat`` at the root), so every reader and
job runs on it unchanged. The same arguments give byte-identical files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cars.data.errors import DataError
from cars.data.matfiles import build_cell_array, build_struct_array, write_mat_file
from cars.data.prepare import MAX_SIDE, VAL_FRACTION, PrepareResult, prepare_dataset
from cars.data.publishing import check_destination
from cars.data.staging import staged_folder
from cars.data.synthetic_car import USUAL_COLOUR_SHARE
from cars.data.synthetic_classes import TASKS, CarDesign, design_classes
from cars.data.synthetic_drawing import CAR_LENGTH_SHARE, draw_photo

DEFAULT_WIDTHS = (96, 200)
ASPECT_RANGE = (0.62, 0.8)  # height / width, as in landscape car photos
JPEG_QUALITY_RANGE = (80, 96)
_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


def _draw_split(
    folder: Path,
    designs: list[CarDesign],
    per_class: int,
    widths: tuple[int, int],
    key: list[int],
    *,
    usual_colour_share: float,
    car_length_share: tuple[float, float],
) -> list[dict[str, int | str]]:
    """Draw one split's photos in a seeded class order; its annotation records."""
    items = [(label, i) for label in range(len(designs)) for i in range(per_class)]
    order = np.random.default_rng(key).permutation(len(items))
    records = []
    for number, index in enumerate(order, start=1):
        label, i = items[index]
        rng = np.random.default_rng([*key, label, i])
        width = int(rng.integers(widths[0], widths[1] + 1))
        height = round(width * rng.uniform(*ASPECT_RANGE))
        photo, (x1, y1, x2, y2) = draw_photo(
            designs[label],
            rng,
            width,
            height,
            usual_colour_share=usual_colour_share,
            car_length_share=car_length_share,
        )
        fname = f"{number:05d}.jpg"
        photo.save(folder / fname, quality=int(rng.integers(*JPEG_QUALITY_RANGE)))
        # Stanford Cars' corners are 1-based and inclusive.
        records.append(
            {"bbox_x1": x1 + 1, "bbox_y1": y1 + 1, "bbox_x2": x2, "bbox_y2": y2}
            | {"class": label + 1, "fname": fname}
        )
    return records


@dataclass(frozen=True)
class SyntheticCars:
    """What a synthetic Stanford Cars folder holds; the same description draws the same bytes.

    Attributes:
        num_classes: car models, each a distinct combination of parts.
        train_per_class, test_per_class: photos per class in each split.
        seed: seeds the classes' designs and every photo.
        task: ``"target"``, or ``"source"`` for classes disjoint from the target's
            (to pretrain a model that then transfers).
        widths: the range of photo widths in pixels; heights are 0.62-0.8 times that.
        usual_colour_share: the share of a class's photos in its usual colour; the
            rest are painted any colour. At 0, as in :data:`cars.sweep_config`'s
            ``demo`` preset, paint says nothing about the class.
        car_length_share: the range of the car's length as a share of the photo's
            width. The default draws close-ups; the ``demo`` preset draws smaller
            cars in wider photos, so that its Grad-CAMs have room around the car.
    """

    num_classes: int
    train_per_class: int
    test_per_class: int
    seed: int = 0
    task: str = "target"
    widths: tuple[int, int] = DEFAULT_WIDTHS
    usual_colour_share: float = USUAL_COLOUR_SHARE
    car_length_share: tuple[float, float] = CAR_LENGTH_SHARE

    def __post_init__(self) -> None:
        if self.train_per_class < 1 or self.test_per_class < 0:
            raise DataError(
                f"train_per_class={self.train_per_class}, test_per_class={self.test_per_class} "
                "are not valid: at least 1 training and 0 test images per class"
            )
        if not 32 <= self.widths[0] <= self.widths[1]:
            raise DataError(
                f"widths={self.widths} is not valid: (low, high) with 32 <= low <= high"
            )
        if not 0 <= self.usual_colour_share <= 1:
            raise DataError(
                f"usual_colour_share={self.usual_colour_share} is not valid: from 0 to 1"
            )
        low, high = self.car_length_share
        if not 0.1 <= low <= high <= 1:
            raise DataError(
                f"car_length_share={tuple(self.car_length_share)} is not valid: (low, high) "
                "with 0.1 <= low <= high <= 1"
            )

    def replace(self, **changes: Any) -> SyntheticCars:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The description as plain values, as ``dataset.json`` records the generator."""
        first = ("task", "seed")  # the order dataset.json has always had
        values = dataclasses.asdict(self) | {"widths": list(self.widths)}
        values["car_length_share"] = list(self.car_length_share)
        return {k: values[k] for k in first} | {k: v for k, v in values.items() if k not in first}


def write_synthetic_cars(root: str | Path, cars: SyntheticCars) -> Path:
    """Write a synthetic Stanford Cars folder of ``cars`` in the devkit layout; returns ``root``.

    Args:
        root: a new or empty folder.
    """
    designs = design_classes(cars.num_classes, seed=cars.seed, task=cars.task)
    root = Path(root)
    task_id = TASKS.index(cars.task)
    with staged_folder(root) as staging:
        for folder in ("cars_train", "cars_test", "devkit"):
            (staging / folder).mkdir()
        train, test = (
            _draw_split(
                staging / folder,
                designs,
                per_class,
                cars.widths,
                [cars.seed, task_id, split],
                usual_colour_share=cars.usual_colour_share,
                car_length_share=cars.car_length_share,
            )
            for folder, per_class, split in (
                ("cars_train", cars.train_per_class, 0),
                ("cars_test", cars.test_per_class, 1),
            )
        )
        devkit = staging / "devkit"
        names = build_cell_array([d.name for d in designs])
        write_mat_file(devkit / "cars_meta.mat", {"class_names": names})
        write_mat_file(
            devkit / "cars_train_annos.mat", {"annotations": build_struct_array(train, _FIELDS)}
        )
        unlabelled = [f for f in _FIELDS if f != "class"]
        write_mat_file(
            devkit / "cars_test_annos.mat", {"annotations": build_struct_array(test, unlabelled)}
        )
        write_mat_file(
            staging / "cars_test_annos_withlabels.mat",
            {"annotations": build_struct_array(test, _FIELDS)},
        )
    return root


def prepare_synthetic(
    out: str | Path,
    cars: SyntheticCars,
    *,
    source_dir: str | Path | None = None,
    max_side: int = MAX_SIDE,
    val_fraction: float = VAL_FRACTION,
    force: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Draw ``cars`` as a Stanford Cars folder and prepare it as a data set at ``out``.

    ``cars.seed`` seeds both the drawing and the train/val hold-out.

    Args:
        source_dir: where to write, and keep, the generated devkit folder; by
            default it goes to a temporary folder that is removed afterwards.

    Other arguments are those of :func:`cars.data.prepare_dataset`.
    """
    out = str(out)
    check_destination(out, force)  # before spending time on drawing
    with contextlib.ExitStack() as stack:
        if source_dir is None:
            temporary = stack.enter_context(tempfile.TemporaryDirectory(prefix="cars-synthetic-"))
            root, label = Path(temporary) / "source", "synthetic (generated, not kept)"
        else:
            root = Path(source_dir)
            label = str(root.resolve())
        write_synthetic_cars(root, cars)
        return prepare_dataset(
            root,
            out,
            max_side=max_side,
            val_fraction=val_fraction,
            seed=cars.seed,
            force=force,
            progress=progress,
            name=f"synthetic-{cars.task}",
            source_label=label,
            generator=cars.to_dict(),
        )
