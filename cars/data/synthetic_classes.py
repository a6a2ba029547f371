"""The classes of the synthetic car data set: each one a distinct combination of
body shape, proportions, details and colour.

Classes are drawn from a grid of discrete attributes (body type, window count,
roof shape, spoiler, stripes, roof rack, headlights, wheels, colour), in a
seeded order that keeps consecutive picks at least three attributes apart where
the grid allows; the target task takes the even picks and the source task the
odd ones, so the two never share a class. Each class then gets its own
continuous proportions (heights, cabin position, wheel size and wheelbase),
drawn from a generator seeded by the seed and the class's grid cell.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass

import numpy as np

from cars.data.errors import DataError

TASKS = ("target", "source")
MAX_CLASSES = 2000


@dataclass(frozen=True)
class BodyShape:
    """A side-view silhouette, in units of the car's length (the rear is at 0)."""

    body_height: float  # sill to beltline
    cabin_height: float  # beltline to roof
    cabin_start: float  # rear end of the cabin's base
    cabin_end: float  # front end of the cabin's base
    rear_slope: float  # how far the rear window leans in
    front_slope: float  # how far the windshield leans in
    wheel_radius: float
    clearance: float  # ground to sill
    rear_wheel: float = 0.19
    front_wheel: float = 0.81


BODY_SHAPES: dict[str, BodyShape] = {
    "sedan": BodyShape(0.17, 0.13, 0.22, 0.70, 0.10, 0.13, 0.075, 0.05),
    "hatchback": BodyShape(0.18, 0.15, 0.05, 0.66, 0.06, 0.15, 0.072, 0.05),
    "coupe": BodyShape(0.15, 0.11, 0.20, 0.68, 0.21, 0.14, 0.075, 0.04),
    "wagon": BodyShape(0.17, 0.14, 0.03, 0.70, 0.03, 0.13, 0.075, 0.05),
    "pickup": BodyShape(0.20, 0.15, 0.42, 0.72, 0.01, 0.09, 0.085, 0.08),
    "van": BodyShape(0.22, 0.24, 0.02, 0.86, 0.01, 0.14, 0.070, 0.05),
    "suv": BodyShape(0.21, 0.16, 0.06, 0.72, 0.04, 0.10, 0.090, 0.09),
}
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (178, 34, 34),
    "blue": (35, 70, 160),
    "silver": (168, 170, 176),
    "black": (38, 38, 44),
    "white": (226, 226, 222),
    "yellow": (222, 182, 40),
    "green": (40, 112, 62),
    "orange": (214, 110, 30),
}
ATTRIBUTES: dict[str, tuple] = {
    "body": tuple(BODY_SHAPES),
    "windows": (1, 2, 3),
    "roof": ("flat", "rounded"),
    "spoiler": (False, True),
    "stripes": (0, 1, 2),
    "roof_rack": (False, True),
    "headlight": ("round", "square", "slit"),
    "wheel": ("plain", "spokes", "ring"),
    "colour": tuple(COLOURS),
}
_BODY_NAMES = {"suv": "SUV"}
_STRIPE_COLOURS = ((245, 245, 245), (20, 20, 20), (200, 30, 30), (240, 200, 40))


@dataclass(frozen=True)
class CarDesign:
    """One class of synthetic car: what every image of it shares."""

    name: str
    body: str
    shape: BodyShape
    windows: int
    roof: str
    spoiler: bool
    stripes: int
    roof_rack: bool
    headlight: str
    wheel: str
    paint: str  # the name of its usual colour
    colour: tuple[int, int, int]
    stripe_colour: tuple[int, int, int]


def contrasting_stripe(stripe: tuple[int, int, int], paint: np.ndarray) -> tuple[int, int, int]:
    """``stripe``, or white or black where it would not show on ``paint``."""
    if np.abs(np.array(stripe) - paint).sum() >= 120:
        return stripe
    return (245, 245, 245) if paint.mean() < 128 else (20, 20, 20)


@functools.cache
def _grid() -> np.ndarray:
    sizes = [len(values) for values in ATTRIBUTES.values()]
    return np.array(list(itertools.product(*(range(n) for n in sizes))), dtype=np.int16)


def _pick_cells(count: int, seed: int) -> list[int]:
    """Grid cells in a seeded order, each far from those picked before it."""
    grid = _grid()
    order = np.random.default_rng(seed).permutation(len(grid))
    cells = grid[order]
    nearest = np.full(len(cells), cells.shape[1], dtype=np.int16)
    picked: list[int] = []
    for min_distance in (3, 2, 1):
        while len(picked) < count:
            free = np.flatnonzero(nearest >= min_distance)
            if free.size == 0:
                break
            i = int(free[0])
            picked.append(int(order[i]))
            nearest = np.minimum(nearest, (cells != cells[i]).sum(axis=1))
    return picked


def _design(cell: int, number: int, seed: int) -> CarDesign:
    values = {
        name: ATTRIBUTES[name][int(i)] for name, i in zip(ATTRIBUTES, _grid()[cell], strict=True)
    }
    rng = np.random.default_rng([seed, cell])
    base = BODY_SHAPES[values["body"]]
    shift = rng.uniform(-0.03, 0.03)
    shape = dataclasses.replace(
        base,
        body_height=base.body_height * rng.uniform(0.88, 1.12),
        cabin_height=base.cabin_height * rng.uniform(0.85, 1.15),
        cabin_start=base.cabin_start + shift,
        cabin_end=base.cabin_end + shift + rng.uniform(-0.03, 0.03),
        wheel_radius=base.wheel_radius * rng.uniform(0.85, 1.15),
        rear_wheel=base.rear_wheel + rng.uniform(-0.03, 0.03),
        front_wheel=base.front_wheel + rng.uniform(-0.03, 0.03),
    )
    colour = np.clip(np.array(COLOURS[values["colour"]]) + rng.integers(-18, 19, 3), 0, 255)
    stripe = contrasting_stripe(_STRIPE_COLOURS[int(rng.integers(len(_STRIPE_COLOURS)))], colour)
    return CarDesign(
        name=f"Synthetic {_BODY_NAMES.get(values['body'], values['body'].title())} {number:04d}",
        shape=shape,
        paint=values["colour"],
        colour=(int(colour[0]), int(colour[1]), int(colour[2])),
        stripe_colour=stripe,
        **{k: v for k, v in values.items() if k != "colour"},
    )


def design_classes(num_classes: int, *, seed: int = 0, task: str = "target") -> list[CarDesign]:
    """The classes of a synthetic task, in label order.

    The same ``seed`` gives the same classes; ``task="source"`` gives classes
    disjoint from ``task="target"``'s, for pretraining a model to transfer.
    """
    if task not in TASKS:
        raise DataError(f"task={task!r} is not valid: one of {', '.join(TASKS)}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise DataError(f"num_classes={num_classes} is not valid: from 1 to {MAX_CLASSES}")
    offset = TASKS.index(task)
    cells = _pick_cells(2 * num_classes, seed)
    return [_design(cells[2 * k + offset], 2 * k + offset + 1, seed) for k in range(num_classes)]
