"""The one exception the data layer raises for bad input."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the file, the problem and how to fix it."""
