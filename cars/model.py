"""The public entry point for building the study's model (see :mod:`cars.learn.model`)."""

from cars.learn.model import build_model, count_parameters

__all__ = ["build_model", "count_parameters"]
