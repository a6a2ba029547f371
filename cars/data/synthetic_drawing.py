"""Drawing one synthetic photo: a side-view car on a cluttered background.

The car comes from :func:`cars.data.synthetic_car.draw_car`, cropped to its
extent, so the photo's bounding box is where the car is pasted, never an estimate.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from cars.data.boxes import Box
from cars.data.synthetic_car import USUAL_COLOUR_SHARE, Colour, draw_car
from cars.data.synthetic_classes import CarDesign

# The car's length as a share of the photo's width: a close-up, as most car photos are.
CAR_LENGTH_SHARE = (0.55, 0.9)
FLAT_BACKGROUND = (255, 0, 255)  # a colour no car is painted, for checking boxes


def _gradient(top: np.ndarray, bottom: np.ndarray, rows: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, max(rows, 1), dtype=np.float32)[:rows, None, None]
    return np.broadcast_to(top + (bottom - top) * t, (rows, width, 3))


def _random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> Colour:
    c = rng.integers(low, high, 3)
    return int(c[0]), int(c[1]), int(c[2])


def draw_background(rng: np.random.Generator, width: int, height: int, ground: int) -> np.ndarray:
    """A float32 ``height`` x ``width`` x 3 scene: sky or wall, road or floor, clutter."""
    horizon = int(np.clip(ground - rng.uniform(0.15, 0.5) * height, 1, height - 1))
    sky = rng.uniform(90, 250, (2, 3)).astype(np.float32)
    sky[:, 2] = np.maximum(sky[:, 2], sky[:, 0])  # skies and walls lean blue or grey
    floor = np.repeat(rng.uniform(50, 170, (2, 1)), 3, axis=1).astype(np.float32)
    floor += rng.uniform(-15, 15, (2, 3)).astype(np.float32)
    pixels = np.concatenate(
        [
            _gradient(sky[0], sky[1], horizon, width),
            _gradient(floor[0], floor[1], height - horizon, width),
        ]
    )
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 6))):  # buildings and trees on the horizon
        w, h = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.45) * height
        left = rng.uniform(-0.1, 1.0) * width
        box = [left, horizon - h, left + w, horizon + 1]
        if rng.random() < 0.5:
            draw.rectangle(box, fill=_random_colour(rng, 60, 200))
        else:
            draw.ellipse(box, fill=_random_colour(rng, 20, 140))
    if rng.random() < 0.6:  # lane markings
        y, dash = rng.uniform(horizon, height), rng.uniform(0.05, 0.15) * width
        for left in np.arange(rng.uniform(-dash, 0), width, 2 * dash):
            draw.rectangle([left, y, left + dash, y + max(1, 0.015 * height)], fill=(235, 230, 200))
    for _ in range(int(rng.integers(0, 5))):  # clutter anywhere
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.02, 0.12) * width, rng.uniform(0.02, 0.12) * height
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([cx - rx, cy - ry, cx + rx, cy + ry], fill=_random_colour(rng))
    pixels = np.asarray(image, dtype=np.float32)
    noise = rng.uniform(0, 10)
    return pixels + noise * rng.standard_normal(pixels.shape, dtype=np.float32)


def draw_photo(
    design: CarDesign,
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    flat_background: bool = False,
    usual_colour_share: float = USUAL_COLOUR_SHARE,
    car_length_share: tuple[float, float] = CAR_LENGTH_SHARE,
) -> tuple[Image.Image, Box]:
    """A ``width`` x ``height`` RGB photo of one car of ``design`` and its bounding box.

    The box is 0-based with ``x2``/``y2`` exclusive. ``flat_background`` draws the
    same car at the same place on :data:`FLAT_BACKGROUND`, with no lighting
    change, to check the box against the pixels. ``usual_colour_share`` is
    :func:`draw_car`'s. ``car_length_share`` bounds the car's length as a share of
    ``width`` (a car that would not fit the height is drawn shorter).
    """
    s = design.shape
    car_height = s.clearance + s.body_height + s.cabin_height + 0.06  # in car lengths
    length = round(min(rng.uniform(*car_length_share) * width, 0.9 * height / car_height))
    car = draw_car(design, rng, max(length, 16), usual_colour_share=usual_colour_share)
    if rng.random() < 0.5:
        car = car.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    cw, ch = car.size
    left = int(rng.integers(0, width - cw + 1))
    ground = int(rng.integers(max(ch, int(0.55 * height)), height + 1))
    box = (left, ground - ch, left + cw, ground)
    if flat_background:
        photo = Image.new("RGB", (width, height), FLAT_BACKGROUND)
        photo.paste(car, box[:2], car)
        return photo, box
    background = draw_background(rng, width, height, ground)
    photo = Image.fromarray(background.clip(0, 255).astype(np.uint8))
    photo.paste(car, box[:2], car)
    # Lighting: exposure, contrast and white balance of the whole photo.
    pixels = np.asarray(photo, dtype=np.float32)
    mean = pixels.mean()
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    pixels = ((pixels - mean) * rng.uniform(0.7, 1.15) + mean) * gain
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8)), box
