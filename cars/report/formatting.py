"""How ``summary.md`` writes its numbers and embeds its figures."""

from __future__ import annotations

from collections.abc import Sequence

from cars.report.results import is_number


def percent(value: object) -> str:
    """``90.0%``; ``n/a`` where the value is unknown."""
    return f"{100 * float(value):.1f}%" if is_number(value) else "n/a"


def percent_interval(value: object, low: object, high: object) -> str:
    """``90.0% [84.2-94.1]``; the value alone where the interval is unknown."""
    if not (is_number(low) and is_number(high)):
        return percent(value)
    return f"{percent(value)} [{100 * float(low):.1f}-{100 * float(high):.1f}]"


def integer(value: object) -> str:
    """``3``; ``n/a`` where the value is unknown."""
    return str(int(value)) if is_number(value) else "n/a"


def embed_figure(figures: Sequence[str], path: str, caption: str) -> list[str]:
    """A Markdown image of ``path`` (relative to the report) if the report has it, else nothing.

    Each image stands in its own paragraph, so that renderers show it below the
    text that discusses it.
    """
    return ["", f"![{caption}]({path})"] if path in figures else []
