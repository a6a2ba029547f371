"""Class names from a Hugging Face dataset card: the YAML front matter of ``README.md``.

The Hub writes a ``ClassLabel`` column's names there::

    ---
    dataset_info:
      features:
      - name: label
        dtype:
          class_label:
            names:
              '0': AM General Hummer SUV 2000
              '1': Acura RL Sedan 2012
    ---

``dataset_info`` may also be a list, one entry per configuration; ``names`` may
be a list instead of a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cars.data.errors import DataError

CARD_FILE = "README.md"
_FENCE = "---"


def read_front_matter(path: Path) -> dict[str, Any]:
    """The YAML block between the ``---`` lines that open a dataset card."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"dataset card {path} cannot be read: {error}") from error
    if not lines or lines[0].strip() != _FENCE or _FENCE not in (s.strip() for s in lines[1:]):
        raise DataError(
            f"dataset card {path} has no YAML front matter (a block between '---' lines at "
            "its top); download the data set's README.md from its Hub page"
        )
    end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == _FENCE)
    try:
        values = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as error:
        raise DataError(
            f"dataset card {path}: its front matter is not valid YAML: {error}"
        ) from error
    if not isinstance(values, dict):
        raise DataError(f"dataset card {path}: its front matter is not a YAML mapping")
    return values


def _configurations(info: Any) -> list[Mapping[str, Any]]:
    entries = info if isinstance(info, list) else [info]
    entries = [e for e in entries if isinstance(e, Mapping)]
    # The default configuration first: it is the one the Parquet files under data/ hold.
    return sorted(entries, key=lambda e: e.get("config_name", "default") != "default")


def _names(values: Any, path: Path, column: str) -> list[str]:
    if isinstance(values, list):
        return [str(v) for v in values]
    if isinstance(values, Mapping):
        try:
            by_index = {int(k): str(v) for k, v in values.items()}
        except ValueError:
            by_index = {}
        if sorted(by_index) == list(range(len(by_index))):
            return [by_index[i] for i in range(len(by_index))]
    raise DataError(
        f"dataset card {path}: the class_label names of {column!r} are neither a list "
        "nor a mapping of the indices 0..n-1 to names"
    )


def read_class_label_names(path: Path, column: str = "label") -> list[str]:
    """The class names of the ``ClassLabel`` column ``column``, in label order.

    Raises:
        DataError: the card, its front matter, the column or its names are missing.
    """
    meta = read_front_matter(path)
    for config in _configurations(meta.get("dataset_info")):
        for feature in config.get("features") or ():
            if not isinstance(feature, Mapping) or feature.get("name") != column:
                continue
            dtype = feature.get("dtype")
            label = dtype.get("class_label") if isinstance(dtype, Mapping) else None
            if isinstance(label, Mapping) and "names" in label:
                return _names(label["names"], path, column)
    raise DataError(
        f"dataset card {path} names no classes for the {column!r} column (expected "
        f"dataset_info: features: - name: {column}, dtype: class_label: names: ...); "
        "download the data set's README.md from its Hub page"
    )
