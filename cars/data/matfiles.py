"""MATLAB v5 ``.mat`` files as Stanford Cars ships them, read and written with scipy.

An ``annotations`` variable is a 1 x N struct array whose fields each hold a 1x1
numeric array (``uint8`` or ``uint16``, whichever fits) or a 1-element string
array; ``class_names`` is a 1 x N cell array of strings.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from cars.data.errors import DataError

# savemat stamps the creation time into the 116-byte header text; a fixed text
# keeps generated files byte-identical from run to run.
_HEADER_TEXT = b"MATLAB 5.0 MAT-file, Platform: posix, written by cars.data"
_HEADER_TEXT_BYTES = 116


def _matlab_value(value: int | str) -> np.ndarray:
    if isinstance(value, str):
        return np.array([value])
    return np.array([[value]], dtype=np.min_scalar_type(value))


def build_struct_array(
    records: Sequence[Mapping[str, int | str]], fields: Sequence[str]
) -> np.ndarray:
    """A 1 x N struct array in the layout of Stanford Cars' ``annotations``."""
    array = np.empty((1, len(records)), dtype=[(name, object) for name in fields])
    for i, record in enumerate(records):
        for name in fields:
            array[0, i][name] = _matlab_value(record[name])
    return array


def build_cell_array(strings: Sequence[str]) -> np.ndarray:
    """A 1 x N cell array of strings, as Stanford Cars' ``class_names``."""
    array = np.empty((1, len(strings)), dtype=object)
    for i, text in enumerate(strings):
        array[0, i] = np.array([text])
    return array


def write_mat_file(path: str | Path, variables: Mapping[str, Any]) -> None:
    """Write a MATLAB v5 file with a fixed header, so equal input gives equal bytes."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, dict(variables), format="5", oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:_HEADER_TEXT_BYTES] = _HEADER_TEXT.ljust(_HEADER_TEXT_BYTES)
    Path(path).write_bytes(bytes(data))


def _load(path: Path) -> dict[str, Any]:
    try:
        return scipy.io.loadmat(str(path))
    except (ValueError, TypeError, OSError, NotImplementedError) as error:
        raise DataError(f"{path} is not a readable MATLAB .mat file: {error}") from error


def _variable(mat: Mapping[str, Any], path: Path, name: str) -> np.ndarray:
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path} has no variable {name!r} (it holds {found})")
    return mat[name]


def _scalar(value: Any, path: Path, field: str, row: int) -> int | str:
    array = np.asarray(value)
    if array.dtype.kind in "US":
        return str(array.ravel()[0]) if array.size else ""
    if array.size != 1 or array.dtype.kind not in "iuf":
        raise DataError(
            f"{path}: record {row} field {field!r} holds {array!r}, expected one number"
        )
    number = array.ravel()[0]
    if array.dtype.kind == "f" and not float(number).is_integer():
        raise DataError(f"{path}: record {row} field {field!r} is {number}, expected an integer")
    return int(number)


def read_struct_records(
    path: Path, name: str, required: Sequence[str], optional: Sequence[str] = ()
) -> list[dict[str, int | str]]:
    """The records of a struct array, one dict per record with the named fields.

    Raises:
        DataError: naming the file and the field when a required field is missing.
    """
    array = _variable(_load(path), path, name)
    fields = array.dtype.names
    if fields is None:
        raise DataError(f"{path}: {name!r} is not a struct array (it is {array.dtype})")
    missing = [f for f in required if f not in fields]
    if missing:
        raise DataError(
            f"{path}: the {name!r} records have no field {', '.join(map(repr, missing))} "
            f"(fields found: {', '.join(fields)}); is this the right file?"
        )
    wanted = [*required, *(f for f in optional if f in fields)]
    # MATLAB stores arrays column-major; for the usual 1 x N arrays the order is the same.
    return [
        {f: _scalar(record[f], path, f, row) for f in wanted}
        for row, record in enumerate(array.ravel(order="F"), start=1)
    ]


def read_cell_strings(path: Path, name: str) -> list[str]:
    """The strings of a cell array such as ``class_names``."""
    array = _variable(_load(path), path, name)
    if array.dtype != object:
        raise DataError(f"{path}: {name!r} is not a cell array of strings (it is {array.dtype})")
    return [str(_scalar(cell, path, name, i)) for i, cell in enumerate(array.ravel(order="F"), 1)]
