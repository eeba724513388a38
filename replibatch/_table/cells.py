"""Cells of a frame as what can be sent: plain JSON values, FileInputs, or refused.

Pure apart from hashing the files a ``files=`` column names. `convert_cells` turns one column's
cells into JSON types (numpy/pandas scalars into Python ones, datetimes into ISO text, Paths,
bytes, file objects and images into FileInputs) and refuses what cannot be sent: lone surrogates
(not valid Unicode; the cache's encoder and Replicate both refuse them), infinities, integers
beyond 64 bits, objects JSON has no form for. Floats stay floats here: whole ones become ints
later, where the model's schema allows (``schema.shape_input``). A plain string is text; only in
a ``files=`` column is it read as a local file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from replibatch._table.inputs import FileInput, as_file_input, is_uri, path_file_input
from replibatch.errors import ConfigurationError

__all__ = ["MISSING", "CellError", "convert_cells", "is_missing"]

MISSING: Any = object()
"""Marks a missing cell (None, NaN, NA, NaT): left out of that row's input."""


class CellError(ValueError):
    """A cell that cannot be sent; `position` is its 0-based row position in the column."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(message)
        self.position = position


def is_missing(value: Any) -> bool:
    """True for None, NaN, pd.NA, NaT: a cell left out of the row's input."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return False


def convert_cells(values: list[Any], *, as_files: bool = False) -> list[Any]:
    """Cells as JSON values (missing cells: `MISSING`); strings are files only when `as_files`
    (then each must be a URL or an existing local file). Raises CellError with the position of
    the first cell that cannot be sent."""
    out = []
    for position, value in enumerate(values):
        kind = type(value)
        try:
            # Fast path: the plain types nearly every cell has.
            if kind is str and not as_files:
                out.append(value if value.isascii() else _checked_text(value, ""))
            elif kind is bool:
                out.append(value)
            elif kind is int:
                out.append(_checked_int(value, ""))
            elif kind is float:
                if value != value:
                    out.append(MISSING)
                elif math.isinf(value):
                    raise _NotJSON(f"float {value!r} cannot be sent as JSON")
                else:
                    out.append(value)  # whole floats become ints later, where the schema allows
            elif value is None or is_missing(value):
                out.append(MISSING)
            elif as_files and isinstance(value, str):
                out.append(_opted_in_file(value))
            elif as_files and isinstance(value, (list, tuple)) and all(
                isinstance(item, str) for item in value
            ):
                out.append([_opted_in_file(item) for item in value])
            else:
                out.append(_to_json(value))
        except _NotJSON as exc:
            raise CellError(position, str(exc)) from None
    return out


def _opted_in_file(text: str) -> Any:
    """A string of a ``files=`` column: a URL stays as it is, a path must be an existing file."""
    if is_uri(text):
        return _checked_text(text, "")
    try:
        file = path_file_input(text)
    except ConfigurationError as exc:
        raise _NotJSON(str(exc)) from None
    if file is None:
        raise _NotJSON(
            f"{text[:80]!r} is not an existing local file (the column is listed in files=)"
        )
    return file


def _checked_text(text: str, where: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end]
        raise _NotJSON(
            f"text{_at(where)} holds a lone surrogate {bad!r} at character {exc.start}, which is "
            f"not valid Unicode and cannot be sent (was the file decoded with the wrong encoding?)"
        ) from None
    return text


_INT_RANGE = (-(2**63), 2**64 - 1)


def _checked_int(value: int, where: str) -> int:
    # JSON itself has no limit, but the cache's encoder and Replicate's API stop at 64 bits.
    if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        raise _NotJSON(f"integer {value}{_at(where)} is beyond 64 bits and cannot be sent")
    return value


class _NotJSON(Exception):
    pass


def _at(where: str) -> str:
    return f" at {where}" if where else ""


def _to_json(value: Any, where: str = "") -> Any:
    """`value` as JSON types (FileInputs kept); raises _NotJSON saying what and where."""
    if isinstance(value, str):
        stored = as_file_input(value)  # an OutputFile of the store; a plain string is text
        return stored if stored is not None else _checked_text(str(value), where)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return _checked_int(int(value), where)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            raise _NotJSON(f"{type(value).__name__} {number!r}{_at(where)} cannot be sent as JSON")
        return number  # whole floats become ints later, where the schema allows (schema.py)
    if isinstance(value, FileInput):
        return value
    if isinstance(value, (datetime, date)):  # pd.Timestamp is a datetime
        return value.isoformat()
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise _NotJSON(f"NaT{_at(where)} cannot be sent as JSON")
        return pd.Timestamp(value).isoformat()
    if isinstance(value, Mapping):
        converted = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotJSON(f"dict key {key!r} ({type(key).__name__}){_at(where)} is not a string")
            _checked_text(key, f"{where}[key]")
            converted[str(key)] = _to_json(item, f"{where}[{key!r}]")
        return converted
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        converted_items = []
        for index, item in enumerate(value):
            if item is pd.NA or item is pd.NaT:
                raise _NotJSON(f"{item!r}{_at(f'{where}[{index}]')} cannot be sent as JSON")
            converted_items.append(_to_json(item, f"{where}[{index}]"))
        return converted_items
    try:
        file = as_file_input(value)
    except ConfigurationError as exc:
        raise _NotJSON(str(exc)) from None
    if file is not None:
        return file
    raise _NotJSON(
        f"a {type(value).__module__}.{type(value).__qualname__} value{_at(where)} cannot be sent "
        f"as JSON "
        f"(use str, numbers, bool, lists, dicts, file paths, bytes or images)"
    )
