"""The synthetic car generator: true boxes, determinism, disjoint tasks, learnable classes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from cars.data import (
    DataError,
    SyntheticCars,
    design_classes,
    read_annotations,
    write_synthetic_cars,
)
from cars.data.synthetic_car import draw_car
from cars.data.synthetic_classes import COLOURS, contrasting_stripe
from cars.data.synthetic_drawing import FLAT_BACKGROUND, draw_photo


def _attributes(design) -> tuple:
    return (
        design.body,
        design.windows,
        design.roof,
        design.spoiler,
        design.stripes,
        design.roof_rack,
        design.headlight,
        design.wheel,
        design.paint,
    )


def _photo_size(rng: np.random.Generator) -> tuple[int, int]:
    width = int(rng.integers(96, 201))
    return width, round(width * rng.uniform(0.62, 0.8))


def test_each_box_tightly_encloses_the_drawn_car() -> None:
    designs = design_classes(7, seed=3)  # every body type among them is likely; not required
    for k, i in itertools.product(range(len(designs)), range(4)):
        seed = [k, i]
        size = _photo_size(np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        flat, box = draw_photo(designs[k], rng, *size, flat_background=True)
        _, box_in_scene = draw_photo(designs[k], np.random.default_rng(seed), *size)
        assert box_in_scene == box  # the same car at the same place
        car = (np.asarray(flat) != FLAT_BACKGROUND).any(axis=2)
        rows, cols = np.flatnonzero(car.any(axis=1)), np.flatnonzero(car.any(axis=0))
        extent = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)  # x2/y2 exclusive
        assert np.abs(np.subtract(extent, box)).max() <= 1, (designs[k].name, extent, box)
        assert 0 <= box[0] < box[2] <= size[0] and 0 <= box[1] < box[3] <= size[1]


def test_written_boxes_match_the_cars_in_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From drawing through the .mat files to the reader: each box encloses its car."""

    def draw_on_flat(*args, **kwargs):  # the real drawing, on a background we can tell apart
        return draw_photo(*args, **kwargs, flat_background=True)

    monkeypatch.setattr("cars.data.synthetic.draw_photo", draw_on_flat)
    root = write_synthetic_cars(
        tmp_path / "cars", SyntheticCars(num_classes=4, train_per_class=4, test_per_class=1, seed=5)
    )
    offsets = []
    for row in read_annotations(root).itertuples():
        with Image.open(root / row.source_file) as image:
            pixels = np.asarray(image, dtype=np.int16)
        car = np.abs(pixels - FLAT_BACKGROUND).max(axis=2) > 60  # above JPEG's noise
        rows, cols = np.flatnonzero(car.any(axis=1)), np.flatnonzero(car.any(axis=0))
        extent = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        box = (row.bbox_x1, row.bbox_y1, row.bbox_x2, row.bbox_y2)
        offsets.append(np.subtract(extent, box))
        assert np.abs(offsets[-1]).max() <= 1, (row.source_file, extent, box)
    # JPEG blurs each edge by a pixel either way; an off-by-one would shift them all.
    assert np.abs(np.mean(offsets, axis=0)).max() < 0.5


def test_the_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    def write(name: str, seed: int) -> dict[str, bytes]:
        root = write_synthetic_cars(
            tmp_path / name,
            SyntheticCars(num_classes=2, train_per_class=2, test_per_class=1, seed=seed),
        )
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    first, again, other = write("a", 0), write("b", 0), write("c", 1)
    assert first == again
    assert len(first) == 6 + 3 + 1  # images, devkit .mat files, test labels
    assert first["cars_train/00001.jpg"] != other["cars_train/00001.jpg"]


def test_the_files_have_the_structure_of_the_real_data_set(tmp_path: Path) -> None:
    root = write_synthetic_cars(
        tmp_path / "cars", SyntheticCars(num_classes=3, train_per_class=2, test_per_class=1)
    )
    train = scipy.io.loadmat(root / "devkit" / "cars_train_annos.mat")["annotations"]
    assert train.shape == (1, 6)
    assert train.dtype.names == ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
    assert train[0, 0]["class"].shape == (1, 1)
    assert train[0, 0]["class"].dtype in (np.uint8, np.uint16)
    assert train[0, 0]["fname"][0] == "00001.jpg"
    test = scipy.io.loadmat(root / "devkit" / "cars_test_annos.mat")["annotations"]
    assert "class" not in test.dtype.names  # as in the real devkit
    labels = scipy.io.loadmat(root / "cars_test_annos_withlabels.mat")["annotations"]
    assert "class" in labels.dtype.names
    names = scipy.io.loadmat(root / "devkit" / "cars_meta.mat")["class_names"]
    assert names.shape == (1, 3)
    assert str(names[0, 0][0]).startswith("Synthetic ")


def test_source_classes_are_disjoint_from_target_classes() -> None:
    target = design_classes(30, seed=0, task="target")
    source = design_classes(30, seed=0, task="source")
    assert not {_attributes(d) for d in target} & {_attributes(d) for d in source}
    assert not {d.name for d in target} & {d.name for d in source}
    # Classes of one task differ in several attributes, not in colour alone.
    for a, b in itertools.combinations(target[:12], 2):
        differ = sum(x != y for x, y in zip(_attributes(a), _attributes(b), strict=True))
        assert differ >= 3, (a.name, b.name)
    assert design_classes(4, seed=0) == target[:4]  # fewer classes: the same first ones


def test_classes_are_distinguishable_but_not_trivially() -> None:
    """Nearest-centroid on small, flip-symmetrised crops of the boxes: above chance, below 100%."""
    num_classes, per_class = 6, 30
    designs = design_classes(num_classes, seed=0)
    features, labels = [], []
    for label, design in enumerate(designs):
        for i in range(per_class):
            rng = np.random.default_rng([label, i])
            photo, box = draw_photo(design, rng, *_photo_size(rng))
            crop = np.asarray(photo.crop(box).resize((16, 8)), dtype=np.float32) / 255
            features.append(((crop + crop[:, ::-1]) / 2).ravel())
            labels.append(label)
    x, y = np.array(features), np.array(labels)
    train = np.arange(len(y)) % per_class < 20
    centroids = np.stack([x[train & (y == c)].mean(axis=0) for c in range(num_classes)])
    distances = ((x[~train, None, :] - centroids[None]) ** 2).sum(axis=2)
    accuracy = (distances.argmin(axis=1) == y[~train]).mean()
    chance = 1 / num_classes
    assert 2.5 * chance < accuracy < 0.95


def _body_colour(car: Image.Image) -> np.ndarray:
    """The commonest opaque colour of a drawn car: its body's paint."""
    pixels = np.asarray(car)
    opaque = pixels[pixels[..., 3] == 255][:, :3]
    colours, counts = np.unique(opaque, axis=0, return_counts=True)
    return colours[counts.argmax()].astype(int)


def _nearest_paint(colour: np.ndarray) -> str:
    return min(COLOURS, key=lambda name: np.abs(np.subtract(COLOURS[name], colour)).sum())


def test_usual_colour_share_sets_how_much_the_paint_tells_of_the_class() -> None:
    design = design_classes(1, seed=0)[0]
    usual = [
        _body_colour(draw_car(design, np.random.default_rng(i), 90, usual_colour_share=1.0))
        for i in range(20)
    ]
    assert all(np.abs(c - design.colour).max() <= 45 for c in usual), usual
    any_paint = [
        _body_colour(draw_car(design, np.random.default_rng(i), 90, usual_colour_share=0.0))
        for i in range(20)
    ]
    assert len({_nearest_paint(c) for c in any_paint}) >= 4
    # Stripes are redrawn where they would vanish on an unusual paint.
    assert contrasting_stripe((245, 245, 245), np.array(COLOURS["white"])) == (20, 20, 20)
    assert contrasting_stripe((245, 245, 245), np.array(COLOURS["black"])) == (245, 245, 245)


def test_photo_sizes_follow_the_widths_option(tmp_path: Path) -> None:
    root = write_synthetic_cars(
        tmp_path / "cars",
        SyntheticCars(num_classes=1, train_per_class=3, test_per_class=0, widths=(300, 320)),
    )
    for path in (root / "cars_train").iterdir():
        with Image.open(path) as image:
            assert 300 <= image.width <= 320
            assert 0.6 * image.width <= image.height <= 0.81 * image.width
            assert image.mode == "RGB" and image.format == "JPEG"


def test_bad_arguments_and_a_non_empty_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="task='other'"):
        design_classes(2, task="other")
    with pytest.raises(DataError, match="train_per_class=0"):
        write_synthetic_cars(
            tmp_path / "a", SyntheticCars(num_classes=2, train_per_class=0, test_per_class=1)
        )
    with pytest.raises(DataError, match=r"usual_colour_share=1\.5"):
        write_synthetic_cars(
            tmp_path / "a",
            SyntheticCars(
                num_classes=2, train_per_class=1, test_per_class=1, usual_colour_share=1.5
            ),
        )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists"):
        write_synthetic_cars(
            tmp_path / "full", SyntheticCars(num_classes=1, train_per_class=1, test_per_class=0)
        )
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # nothing half-written


def test_car_length_share_sets_how_much_of_the_photo_the_car_spans() -> None:
    design = design_classes(1, seed=0)[0]
    for share in ((0.35, 0.55), (0.55, 0.9)):
        for i in range(12):
            rng = np.random.default_rng(i)
            photo, (x1, _, x2, _) = draw_photo(
                design, rng, 240, 180, usual_colour_share=0.0, car_length_share=share
            )
            # A car too tall for the photo at that length is drawn shorter, never longer.
            assert (x2 - x1) / photo.width <= share[1] + 0.01, (share, i)
    close = [draw_photo(design, np.random.default_rng(i), 240, 180)[1] for i in range(12)]
    wide = [
        draw_photo(design, np.random.default_rng(i), 240, 180, car_length_share=(0.35, 0.55))[1]
        for i in range(12)
    ]
    assert np.mean([b[2] - b[0] for b in wide]) < 0.8 * np.mean([b[2] - b[0] for b in close])


def test_a_bad_car_length_share_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"car_length_share=\(0\.6, 0\.4\) is not valid"):
        SyntheticCars(
            num_classes=2, train_per_class=1, test_per_class=1, car_length_share=(0.6, 0.4)
        )
