"""Drawing one synthetic car, side on, as an RGBA image cropped to the car.

The car is drawn at three times the size on its own transparent layer and
reduced, so that its edges are smooth and its alpha channel is exactly the
object's extent: the bounding box is that extent, never an estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from cars.data.synthetic_classes import COLOURS, CarDesign, contrasting_stripe

SUPERSAMPLE = 3
USUAL_COLOUR_SHARE = 2 / 3

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


@dataclass(frozen=True)
class _Frame:
    """Where a car's parts sit on its supersampled layer, in that layer's pixels."""

    big: int  # the car's length
    body_height: float
    cabin_height: float
    wheel_radius: float
    clearance: float
    x0: int  # the car's rear end
    ground: int
    width: int
    height: int

    @property
    def sill(self) -> float:
        """The row of the body's lower edge."""
        return self.ground - self.clearance

    @property
    def belt(self) -> float:
        """The row of the beltline, where the body meets the windows."""
        return self.ground - self.clearance - self.body_height

    @property
    def roof(self) -> float:
        """The row of the roof."""
        return self.belt - self.cabin_height

    def x(self, fraction: float) -> float:
        """The layer's column at ``fraction`` of the car's length from its rear."""
        return self.x0 + fraction * self.big


class _Cabin(NamedTuple):
    """The corners of the cabin's side: where its rear and front edges meet the belt and roof."""

    rear_base: tuple[float, float]
    rear_top: tuple[float, float]
    front_top: tuple[float, float]
    front_base: tuple[float, float]


def _lay_out(design: CarDesign, rng: np.random.Generator, length: int) -> _Frame:
    """The design's proportions, each jittered so no two cars of a class are alike, on a layer."""
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
    return _Frame(big, bh, ch, r, clearance, pad, height - pad, width, height)


def _choose_paint(
    design: CarDesign, rng: np.random.Generator, usual_colour_share: float
) -> tuple[Colour, Colour]:
    """The body's and the stripes' colours: a model's usual colour is only its likeliest."""
    usual = rng.random() < usual_colour_share
    paint = design.colour if usual else _PAINTS[int(rng.integers(len(_PAINTS)))]
    body = _shade(np.asarray(paint) + rng.normal(0, 8, 3), rng.uniform(0.9, 1.1))
    stripe_colour = design.stripe_colour
    if not usual:  # the class's stripes were chosen to show on its usual colour
        stripe_colour = contrasting_stripe(stripe_colour, np.asarray(body))
    return body, stripe_colour


def _draw_lower_body(draw: ImageDraw.ImageDraw, design: CarDesign, f: _Frame, body: Colour) -> None:
    """The body below the windows, with a sloped nose and tail, a shaded sill and a pickup's bed."""
    x, bh, sill, belt = f.x, f.body_height, f.sill, f.belt
    draw.polygon(
        [
            (x(0.0), sill - 0.1 * bh),
            (x(0.0), belt + 0.3 * bh),
            (x(0.03), belt),
            (x(design.shape.cabin_end), belt),
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
        draw.rectangle(
            [x(0.02), belt, x(design.shape.cabin_start - 0.01), belt + 0.1 * bh], fill=_DARK
        )


def _cabin_corners(design: CarDesign, f: _Frame) -> _Cabin:
    """Where the cabin's sloped rear and front edges start at the belt and end at the roof."""
    s = design.shape
    return _Cabin(
        rear_base=(f.x(s.cabin_start), f.belt),
        rear_top=(f.x(s.cabin_start + s.rear_slope), f.roof),
        front_top=(f.x(s.cabin_end - s.front_slope), f.roof),
        front_base=(f.x(s.cabin_end), f.belt),
    )


def _draw_cabin(
    draw: ImageDraw.ImageDraw, design: CarDesign, f: _Frame, cabin: _Cabin, body: Colour
) -> None:
    """The cabin's side in the body's colour, its roof flat or rounded at the corners."""
    rear_base, rear_top, front_top, front_base = cabin
    roof, ch = f.roof, f.cabin_height
    if design.roof == "rounded":
        bend = 0.05 * f.big
        outline = [
            rear_base,
            (_edge_x(rear_base, rear_top, roof + 0.3 * ch), roof + 0.3 * ch),
            (rear_top[0] + bend, roof),
            (front_top[0] - bend, roof),
            (_edge_x(front_base, front_top, roof + 0.3 * ch), roof + 0.3 * ch),
            front_base,
        ]
    else:
        outline = [rear_base, rear_top, front_top, front_base]
    draw.polygon(outline, fill=body)


def _draw_windows(
    draw: ImageDraw.ImageDraw,
    design: CarDesign,
    f: _Frame,
    cabin: _Cabin,
    body: Colour,
    *,
    rng: np.random.Generator,
) -> None:
    """The glass inside the cabin, in a tint of its own, split into windows by pillars and doors."""
    rear_base, rear_top, front_top, front_base = cabin
    roof, belt, sill, bh = f.roof, f.belt, f.sill, f.body_height
    m = 0.015 * f.big
    g_top, g_bottom = (
        roof + m + (0.15 * f.cabin_height if design.roof == "rounded" else 0),
        belt - m,
    )
    g_rear = [_edge_x(rear_base, rear_top, y) + m for y in (g_bottom, g_top)]
    g_front = [_edge_x(front_base, front_top, y) - m for y in (g_bottom, g_top)]
    draw.polygon(
        [(g_rear[0], g_bottom), (g_rear[1], g_top), (g_front[1], g_top), (g_front[0], g_bottom)],
        fill=_shade(np.asarray(_GLASS) + rng.normal(0, 6, 3), 1.0),
    )
    pillar = 0.022 * f.big
    left, right = max(g_rear), min(g_front)
    for k in range(1, design.windows):
        px = left + (right - left) * k / design.windows
        draw.rectangle([px - pillar / 2, roof, px + pillar / 2, belt], fill=body)
        draw.line([(px, belt), (px, sill - 0.2 * bh)], fill=_shade(body, 0.55), width=SUPERSAMPLE)


def _draw_stripes(
    draw: ImageDraw.ImageDraw, design: CarDesign, f: _Frame, stripe_colour: Colour
) -> None:
    """The class's stripes along the body's side."""
    bh = f.body_height
    for k in range(design.stripes):
        y = f.belt + bh * (0.42 + 0.18 * k)
        draw.rectangle([f.x(0.02), y, f.x(0.98), y + 0.08 * bh], fill=stripe_colour)


def _draw_spoiler(draw: ImageDraw.ImageDraw, design: CarDesign, f: _Frame, cabin: _Cabin) -> None:
    """A rear wing on its post, on the trunk's lid or the roof's rear edge."""
    big = f.big
    if design.shape.cabin_start > 0.15:  # a trunk: the wing sits on its lid
        wing_y, left_x = f.belt - 0.045 * big, f.x(0.01)
    else:  # a tailgate: the wing sits on the roof's rear edge
        wing_y, left_x = f.roof - 0.02 * big, cabin.rear_top[0] - 0.02 * big
    draw.rectangle([left_x, wing_y, left_x + 0.11 * big, wing_y + 0.016 * big], fill=_DARK)
    draw.rectangle(
        [left_x + 0.04 * big, wing_y, left_x + 0.055 * big, wing_y + 0.045 * big], fill=_DARK
    )


def _draw_roof_rack(draw: ImageDraw.ImageDraw, f: _Frame, cabin: _Cabin) -> None:
    """A rack's bar above the roof, on three legs."""
    big, roof = f.big, f.roof
    a, b = cabin.rear_top[0] + 0.03 * big, cabin.front_top[0] - 0.03 * big
    draw.rectangle([a, roof - 0.035 * big, b, roof - 0.023 * big], fill=_DARK)
    for leg in (a, (a + b) / 2, b - 0.012 * big):
        draw.rectangle([leg, roof - 0.03 * big, leg + 0.012 * big, roof], fill=_DARK)


def _draw_lights(draw: ImageDraw.ImageDraw, design: CarDesign, f: _Frame) -> None:
    """The class's headlight shape at the nose, and a taillight at the tail."""
    big, bh, belt = f.big, f.body_height, f.belt
    hx, hy = f.x(0.985), belt + 0.3 * bh
    if design.headlight == "round":
        draw.ellipse([hx - 0.035 * big, hy - 0.035 * big, hx, hy + 0.035 * big], fill=_HEADLIGHT)
    elif design.headlight == "square":
        draw.rectangle([hx - 0.05 * big, hy - 0.03 * big, hx, hy + 0.03 * big], fill=_HEADLIGHT)
    else:
        draw.rectangle([hx - 0.09 * big, hy - 0.012 * big, hx, hy + 0.012 * big], fill=_HEADLIGHT)
    draw.rectangle([f.x(0.0), belt + 0.15 * bh, f.x(0.025), belt + 0.45 * bh], fill=_TAILLIGHT)


def _draw_bumpers(draw: ImageDraw.ImageDraw, f: _Frame) -> None:
    """Dark bumpers low on the nose and the tail."""
    bh, sill = f.body_height, f.sill
    for a, b in ((0.0, 0.06), (0.94, 1.0)):
        draw.rectangle([f.x(a), sill - 0.32 * bh, f.x(b), sill - 0.1 * bh], fill=_DARK)


def _draw_wheels(
    draw: ImageDraw.ImageDraw, design: CarDesign, f: _Frame, rng: np.random.Generator
) -> None:
    """Both wheels in their arches, their rims turned to a random angle and tinted."""
    r, ground = f.wheel_radius, f.ground
    angle = rng.uniform(0, 2 * math.pi)
    rim = _shade(np.full(3, 190.0) + rng.normal(0, 8, 3), 1.0)
    for wx in (f.x(design.shape.rear_wheel), f.x(design.shape.front_wheel)):
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


def draw_car(
    design: CarDesign,
    rng: np.random.Generator,
    length: int,
    *,
    usual_colour_share: float = USUAL_COLOUR_SHARE,
) -> Image.Image:
    """An RGBA image of one car of ``design``, facing right, cropped to the car.

    The parts are drawn back to front, and ``rng`` is drawn from in a fixed
    order (proportions, paint, glass, wheels): the same generator gives the
    same car.

    Args:
        length: the car's length in pixels (its height follows from the design).
        usual_colour_share: the chance that the car wears its class's usual
            colour; otherwise its paint is any of :data:`COLOURS`. At 0 the
            paint says nothing about the class.
    """
    f = _lay_out(design, rng, length)
    layer = Image.new("RGBA", (f.width, f.height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    body, stripe_colour = _choose_paint(design, rng, usual_colour_share)
    cabin = _cabin_corners(design, f)
    _draw_lower_body(draw, design, f, body)
    _draw_cabin(draw, design, f, cabin, body)
    _draw_windows(draw, design, f, cabin, body, rng=rng)
    _draw_stripes(draw, design, f, stripe_colour)
    if design.spoiler:
        _draw_spoiler(draw, design, f, cabin)
    if design.roof_rack:
        _draw_roof_rack(draw, f, cabin)
    _draw_lights(draw, design, f)
    _draw_bumpers(draw, f)
    _draw_wheels(draw, design, f, rng)
    small = layer.resize((f.width // SUPERSAMPLE, f.height // SUPERSAMPLE), Image.Resampling.BOX)
    return small.crop(small.getchannel("A").getbbox())
