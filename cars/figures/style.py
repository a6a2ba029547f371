"""The report's shared look: regime colours, name shortening, and atomic PNG writes."""

from __future__ import annotations

import textwrap
from pathlib import Path

from matplotlib.figure import Figure

from cars.config import RANDOM_INIT, REGIMES
from cars.storage import atomic_path

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
REGIME_COLORS: dict[str, str] = {
    "scratch": "#E69F00",  # orange
    "frozen": "#0072B2",  # blue
    "finetune": "#CC79A7",  # reddish purple
}
# The untrained baseline (cars.config.RANDOM_INIT), and the chance levels, stay grey.
BASELINE_COLOR = "#8C8C8C"
CORRECT_COLOR = "#009E73"  # bluish green
WRONG_COLOR = "#D55E00"  # vermillion
CORRECT_MARK = "✓"
WRONG_MARK = "✗"
CAM_CMAP = "turbo"
CAM_ALPHA = 0.5
DPI = 150


def regime_color(regime: str) -> str:
    """The colour of a regime (or the random baseline) in every figure; others are an error."""
    if regime == RANDOM_INIT:
        return BASELINE_COLOR
    if regime not in REGIME_COLORS:
        raise ValueError(
            f"unknown regime {regime!r}; regimes are {', '.join(REGIMES)} "
            f"(and {RANDOM_INIT} for the untrained baseline)"
        )
    return REGIME_COLORS[regime]


def regime_label(regime: str) -> str:
    """How a figure names a column's regime: the baseline is called what it is."""
    return "untrained" if regime == RANDOM_INIT else regime


def shorten_name(name: str, width: int = 28, max_lines: int = 2) -> str:
    """Wrap a long class or model name onto at most ``max_lines`` lines of ``width``.

    Car classes differ in their last words ("... Regular Cab 2012" against
    "... Crew Cab 2012"), so a name too long even then loses words from the
    middle, never its end.
    """
    lines = textwrap.wrap(str(name), width=width) or [""]
    if len(lines) <= max_lines:
        return "\n".join(lines)
    words = str(name).split()
    tail = words[-2:]
    head = words[: -len(tail)]
    while head:
        head = head[:-1]
        lines = textwrap.wrap(" ".join([*head, "…", *tail]), width=width)
        if len(lines) <= max_lines:
            return "\n".join(lines)
    lines = textwrap.wrap(str(name), width=width)[:max_lines]
    lines[-1] = lines[-1][: width - 1].rstrip() + "…"
    return "\n".join(lines)


def add_title(fig: Figure, title: str, fontsize: float = 13) -> None:
    """The figure's bold title, wrapped to the figure's width."""
    characters = max(20, int(fig.get_figwidth() * 72 / (0.62 * fontsize)))
    fig.suptitle(textwrap.fill(title, width=characters), fontsize=fontsize, weight="bold")


def save_figure(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG under a temporary name, rename it into place, close it."""
    target = Path(path)
    try:
        if target.suffix.lower() != ".png":
            raise ValueError(f"figures are written as PNG; give a path ending in .png, got {path}")
        with atomic_path(target) as staged:
            fig.savefig(staged, format="png", dpi=dpi, facecolor="white")
    finally:
        _close(fig)
    return target


def _close(fig: Figure) -> None:
    # Figures made through pyplot stay registered (and in memory) until closed;
    # a bare Figure is freed with its last reference.
    if fig.canvas.manager is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)
