"""Drawing one synthetic photo: a side-view car on a cluttered background.

The car is drawn at three times the size on its own transparent layer and
reduced, so that its edges are smooth and its alpha channel is exactly the
object's extent: the bounding box is that extent, never an estimate.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from cars.data.boxes import Box
from cars.data.synthetic_classes import COLOURS, CarDesign, contrasting_stripe

SUPERSAMPLE = 3
USUAL_COLOUR_SHARE = 2 / 3
# The car's length as a share of the photo's width: a close-up, as most car photos are.
CAR_LENGTH_SHARE = (0.55, 0.9)
FLAT_BACKGROUND = (255, 0, 255)  # a colour no car is painted, for checking boxes

_TYRE = (30, 30, 33)
_DARK = (45, 45, 50)
_GLASS = (60, 78, 96)
_HEADLIGHT = (250, 242, 205)
_TAILLIGHT = (200, 20, 25)
_PAINTS = tuple(COLOURS.values())

Colour = tuple[int, int, int]


def _shade(colour: Colour | np.ndarray, factor: float) -> Colour:
    c = np.clip(np.asarray(colour, dtype=float) * factor, 0, 255)
    return int(c[0]), int(c[1]), int(c[2])


def _edge_x(bottom: tuple[float, float], top: tuple[float, float], y: float) -> float:
    (xb, yb), (xt, yt) = bottom, top
    return xb + (xt - xb) * (yb - y) / (yb - yt)


def draw_car(
    design: CarDesign,
    rng: np.random.Generator,
    length: int,
    *,
    usual_colour_share: float = USUAL_COLOUR_SHARE,
) -> Image.Image:
    """An RGBA image of one car of ``design``, facing right, cropped to the car.

    Args:
        length: the car's length in pixels (its height follows from the design).
        usual_colour_share: the chance that the car wears its class's usual
            colour; otherwise its paint is any of :data:`COLOURS`. At 0 the
            paint says nothing about the class.
    """
    s = design.shape
    jitter = rng.uniform(0.96, 1.04, 4)
    big = length * SUPERSAMPLE
    bh, ch = s.body_height * big * jitter[0], s.cabin_height * big * jitter[1]
    r, clearance = s.wheel_radius * big * jitter[2], s.clearance * big * jitter[3]
    extra = 0.06 * big  # room above the roof for a rack or a spoiler
    pad = 2 * SUPERSAMPLE
    width = big + 2 * pad
    height = math.ceil(clearance + bh + ch + extra) + 2 * pad
    width += -width % SUPERSAMPLE
    height += -height % SUPERSAMPLE
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)

    # A model comes in many colours: its usual one is only the likeliest.
    usual = rng.random() < usual_colour_share
    paint = design.colour if usual else _PAINTS[int(rng.integers(len(_PAINTS)))]
    body = _shade(np.asarray(paint) + rng.normal(0, 8, 3), rng.uniform(0.9, 1.1))
    stripe_colour = design.stripe_colour
    if not usual:  # the class's stripes were chosen to show on its usual colour
        stripe_colour = contrasting_stripe(stripe_colour, np.asarray(body))
    x0, ground = pad, height - pad
    sill, belt = ground - clearance, ground - clearance - bh
    roof = belt - ch

    def x(fraction: float) -> float:
        return x0 + fraction * big

    # Lower body, with a sloped nose and tail.
    draw.polygon(
        [
            (x(0.0), sill - 0.1 * bh),
            (x(0.0), belt + 0.3 * bh),
            (x(0.03), belt),
            (x(s.cabin_end), belt),
            (x(0.96), belt + 0.15 * bh),
            (x(1.0), belt + 0.45 * bh),
            (x(1.0), sill - 0.1 * bh),
            (x(0.97), sill),
            (x(0.03), sill),
        ],
        fill=body,
    )
    draw.rectangle([x(0.03), sill - 0.18 * bh, x(0.97), sill], fill=_shade(body, 0.6))
    if design.body == "pickup":  # the open bed's inner wall
        draw.rectangle([x(0.02), belt, x(s.cabin_start - 0.01), belt + 0.1 * bh], fill=_DARK)

    # Cabin and glass.
    rear_base, front_base = (x(s.cabin_start), belt), (x(s.cabin_end), belt)
    rear_top = (x(s.cabin_start + s.rear_slope), roof)
    front_top = (x(s.cabin_end - s.front_slope), roof)
    if design.roof == "rounded":
        bend = 0.05 * big
        cabin = [
            rear_base,
            (_edge_x(rear_base, rear_top, roof + 0.3 * ch), roof + 0.3 * ch),
            (rear_top[0] + bend, roof),
            (front_top[0] - bend, roof),
            (_edge_x(front_base, front_top, roof + 0.3 * ch), roof + 0.3 * ch),
            front_base,
        ]
    else:
        cabin = [rear_base, rear_top, front_top, front_base]
    draw.polygon(cabin, fill=body)
    m = 0.015 * big
    g_top, g_bottom = roof + m + (0.15 * ch if design.roof == "rounded" else 0), belt - m
    g_rear = [_edge_x(rear_base, rear_top, y) + m for y in (g_bottom, g_top)]
    g_front = [_edge_x(front_base, front_top, y) - m for y in (g_bottom, g_top)]
    draw.polygon(
        [(g_rear[0], g_bottom), (g_rear[1], g_top), (g_front[1], g_top), (g_front[0], g_bottom)],
        fill=_shade(np.asarray(_GLASS) + rng.normal(0, 6, 3), 1.0),
    )
    pillar = 0.022 * big
    left, right = max(g_rear), min(g_front)
    for k in range(1, design.windows):
        px = left + (right - left) * k / design.windows
        draw.rectangle([px - pillar / 2, roof, px + pillar / 2, belt], fill=body)
        draw.line([(px, belt), (px, sill - 0.2 * bh)], fill=_shade(body, 0.55), width=SUPERSAMPLE)

    # Details.
    for k in range(design.stripes):
        y = belt + bh * (0.42 + 0.18 * k)
        draw.rectangle([x(0.02), y, x(0.98), y + 0.08 * bh], fill=stripe_colour)
    if design.spoiler:
        if s.cabin_start > 0.15:  # a trunk: the wing sits on its lid
            wing_y, left_x = belt - 0.045 * big, x(0.01)
        else:  # a tailgate: the wing sits on the roof's rear edge
            wing_y, left_x = roof - 0.02 * big, rear_top[0] - 0.02 * big
        draw.rectangle([left_x, wing_y, left_x + 0.11 * big, wing_y + 0.016 * big], fill=_DARK)
        draw.rectangle(
            [left_x + 0.04 * big, wing_y, left_x + 0.055 * big, wing_y + 0.045 * big], fill=_DARK
        )
    if design.roof_rack:
        a, b = rear_top[0] + 0.03 * big, front_top[0] - 0.03 * big
        draw.rectangle([a, roof - 0.035 * big, b, roof - 0.023 * big], fill=_DARK)
        for leg in (a, (a + b) / 2, b - 0.012 * big):
            draw.rectangle([leg, roof - 0.03 * big, leg + 0.012 * big, roof], fill=_DARK)
    hx, hy = x(0.985), belt + 0.3 * bh
    if design.headlight == "round":
        draw.ellipse([hx - 0.035 * big, hy - 0.035 * big, hx, hy + 0.035 * big], fill=_HEADLIGHT)
    elif design.headlight == "square":
        draw.rectangle([hx - 0.05 * big, hy - 0.03 * big, hx, hy + 0.03 * big], fill=_HEADLIGHT)
    else:
        draw.rectangle([hx - 0.09 * big, hy - 0.012 * big, hx, hy + 0.012 * big], fill=_HEADLIGHT)
    draw.rectangle([x(0.0), belt + 0.15 * bh, x(0.025), belt + 0.45 * bh], fill=_TAILLIGHT)
    for a, b in ((0.0, 0.06), (0.94, 1.0)):
        draw.rectangle([x(a), sill - 0.32 * bh, x(b), sill - 0.1 * bh], fill=_DARK)

    # Wheels, in their arches.
    angle = rng.uniform(0, 2 * math.pi)
    rim = _shade(np.full(3, 190.0) + rng.normal(0, 8, 3), 1.0)
    for wx in (x(s.rear_wheel), x(s.front_wheel)):
        cy = ground - r
        arch = 1.12 * r
        draw.pieslice([wx - arch, cy - arch, wx + arch, cy + arch], 180, 360, fill=_DARK)
        draw.ellipse([wx - r, cy - r, wx + r, cy + r], fill=_TYRE)
        rr = 0.62 * r
        draw.ellipse([wx - rr, cy - rr, wx + rr, cy + rr], fill=rim)
        if design.wheel == "spokes":
            for k in range(5):
                t = angle + 2 * math.pi * k / 5
                end = (wx + rr * math.cos(t), cy + rr * math.sin(t))
                draw.line([(wx, cy), end], fill=_DARK, width=max(1, round(0.12 * r)))
        elif design.wheel == "ring":
            inner, hub = 0.42 * r, 0.14 * r
            draw.ellipse([wx - inner, cy - inner, wx + inner, cy + inner], fill=_DARK)
            draw.ellipse([wx - hub, cy - hub, wx + hub, cy + hub], fill=rim)

    small = layer.resize((width // SUPERSAMPLE, height // SUPERSAMPLE), Image.Resampling.BOX)
    return small.crop(small.getchannel("A").getbbox())


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
