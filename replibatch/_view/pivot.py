"""The model behind `rb.compare`: which rows land in which cell of a side-by-side table (pure).

A `Pivot` groups a result frame's row positions by (row key, column key), orders the rows
(frame order, or by a metric), and answers what the rendering needs without any HTML: the
`frame` of values, the column labels, each column's footer figures, and which columns of a row
hold the very same output. Keys are tuples of NaN-safe, hashable stand-ins for the cell values
(`key_part`), so missing values group together and unhashable outputs (lists) still group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from replibatch._table.frame import ADDED_COLUMNS
from replibatch._view.media import is_missing
from replibatch.errors import ConfigurationError

__all__ = [
    "RESULT_COLUMNS",
    "ColumnStats",
    "Key",
    "Pivot",
    "as_columns",
    "column_label",
    "key_label",
    "key_part",
    "whole_number_columns",
]

# Columns the run adds; anything else is a parameter the user chose.
RESULT_COLUMNS = ADDED_COLUMNS

Key = tuple[Any, ...]


def as_columns(name: str, value: str | Sequence[str] | None) -> list[str]:
    """`value` (one column name, several, or None) as a list of names.

    Raises ConfigurationError when `value` is an empty sequence (`name` says which argument).
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    columns = list(value)
    if not columns:
        raise ConfigurationError(f"{name} must name at least one column")
    return columns


def key_part(value: Any) -> Any:
    """A hashable, NaN-safe stand-in for a cell value used as a group key."""
    if is_missing(value):
        return None
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _text(part: Any, whole: bool = False) -> str:
    """A key part as text: ``—`` for missing; with `whole` (a column of whole numbers that pandas
    made float because other rows lack it) ``4`` rather than ``4.0``; else ``str``."""
    if part is None:
        return "—"
    if whole and isinstance(part, float) and part.is_integer() and abs(part) < 1e15:
        return str(int(part))
    return str(part)


def whole_number_columns(res: pd.DataFrame, names: Sequence[str]) -> set[str]:
    """The float columns among `names` whose known values are all whole numbers."""
    found = set()
    for name in names:
        if name in res.columns and pd.api.types.is_float_dtype(res[name]):
            known = res[name].dropna()
            if len(known) and bool((known == known.round()).all()):
                found.add(name)
    return found


def key_label(key: Key, names: Sequence[str] = (), whole: set[str] | None = None) -> str:
    """A row key as text, its parts joined by `` · `` (whole-number columns without ``.0``)."""
    whole = whole or set()
    return " · ".join(
        _text(part, i < len(names) and names[i] in whole) for i, part in enumerate(key)
    )


def column_label(names: Sequence[str], key: Key, whole: set[str] | None = None) -> str:
    """A column header: ``name=value`` per part, so a parameter keeps its name (``temperature=0.7``);
    the model and internal columns (names starting ``__``) show their value alone."""
    parts = []
    for name, part in zip(names, key, strict=False):
        value = _text(part, name in (whole or set()))
        plain = name == "model" or str(name).startswith("__")
        parts.append(value if plain else f"{name}={value}")
    return " · ".join(parts)


def _same_key(value: Any) -> Any:
    """What two outputs must share to count as identical (file outputs: the content-addressed path)."""
    if is_missing(value):
        return None
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    if isinstance(value, (dict, set)):
        return repr(value)
    return key_part(value)


@dataclass(frozen=True)
class ColumnStats:
    """The footer figures of one comparison column (NaN where no row has the figure)."""

    rows: int
    failed: int
    mean_cost_usd: float
    p50_latency_s: float


def numbers(res: pd.DataFrame, column: str) -> pd.Series:
    """`res[column]` as floats (text becomes NaN); all NaN when the column is missing."""
    if column not in res.columns:
        return pd.Series(math.nan, index=res.index, dtype=float)
    return pd.to_numeric(res[column], errors="coerce").astype(float)


@dataclass
class Pivot:
    """Row positions of `res` (a frame with a fresh 0..n-1 index) per (row key, column key).

    Build it with :meth:`of`. `cells` maps each occupied (row key, column key) to the positions
    of the rows in it, in frame order; `row_keys` and `column_keys` are in order of first
    appearance (rows re-ordered by `sort` when given).
    """

    res: pd.DataFrame
    index: list[str]
    columns: list[str]
    values: str
    cells: dict[tuple[Key, Key], list[int]] = field(default_factory=dict)
    row_keys: list[Key] = field(default_factory=list)
    column_keys: list[Key] = field(default_factory=list)

    @classmethod
    def of(
        cls, res: pd.DataFrame, *, index: list[str], columns: list[str], values: str,
        sort: str | None = None,
    ) -> Pivot:
        """Group `res` by the `index` and `columns` columns (names are not checked here).

        Raises ConfigurationError when `sort` names a missing or non-numeric column.
        """
        res = res.reset_index(drop=True)
        cells, row_keys, column_keys = _group(res, index, columns)
        if sort is not None:
            row_keys = _sorted_rows(res, cells, row_keys, column_keys, sort)
        return cls(res, index, columns, values, cells, row_keys, column_keys)

    def frame(self) -> pd.DataFrame:
        """The values as a DataFrame: one row per row key, one column per column key; a cell holds
        the value of its one row, a tuple when several rows landed there, None when none did."""
        rows = _make_index(self.row_keys, self.index)
        if self.columns:
            cols = _make_index(self.column_keys, self.columns)
        else:
            cols = pd.Index([self.values], dtype=object)
        empty = np.full((len(rows), len(cols)), None, dtype=object)
        frame = pd.DataFrame(empty, index=rows, columns=cols, dtype=object)
        row_at = {key: position for position, key in enumerate(self.row_keys)}
        col_at = {key: position for position, key in enumerate(self.column_keys)}
        values = self.res[self.values]
        for (row_key, col_key), positions in self.cells.items():
            cell = values.iloc[positions]
            frame.iat[row_at[row_key], col_at[col_key]] = (
                cell.iat[0] if len(positions) == 1 else tuple(cell)
            )
        return frame

    def column_labels(self) -> list[str]:
        """The header of each value column, in order (``name=value`` for parameters)."""
        if not self.columns:
            return [self.values]
        whole = whole_number_columns(self.res, self.columns)
        return [column_label(self.columns, key, whole) for key in self.column_keys]

    def footer(self) -> list[ColumnStats]:
        """Per value column: rows, failures, mean cost and median latency of the rows in it."""
        stats = []
        cost = numbers(self.res, "cost_usd")
        latency = numbers(self.res, "latency_s")
        status = self.res["status"] if "status" in self.res.columns else None
        for col_key in self.column_keys:
            positions = [p for (_, c), ps in self.cells.items() if c == col_key for p in ps]
            mine_cost = cost.iloc[positions].dropna()
            mine_latency = latency.iloc[positions].dropna()
            failed = 0 if status is None else int((status.iloc[positions] != "succeeded").sum())
            stats.append(
                ColumnStats(
                    rows=len(positions),
                    failed=failed,
                    mean_cost_usd=float(mine_cost.mean()) if len(mine_cost) else math.nan,
                    p50_latency_s=float(mine_latency.median()) if len(mine_latency) else math.nan,
                )
            )
        return stats

    def identical(self, row_key: Key, labels: list[str]) -> dict[str, list[str]]:
        """For each column (by label) of this row, the other columns whose single succeeded
        output is the same. Cells with several rows are left out: "the same" would be ambiguous."""
        if len(self.column_keys) < 2 or self.values not in self.res.columns:
            return {}
        values = self.res[self.values]
        status = self.res["status"] if "status" in self.res.columns else None
        groups: dict[Any, list[str]] = {}
        for col_key, label in zip(self.column_keys, labels, strict=False):
            positions = self.cells.get((row_key, col_key), [])
            if len(positions) != 1:
                continue
            if status is not None and status.iat[positions[0]] != "succeeded":
                continue
            key = _same_key(values.iat[positions[0]])
            if key is not None:
                groups.setdefault(key, []).append(label)
        same: dict[str, list[str]] = {}
        for members in groups.values():
            if len(members) > 1:
                for label in members:
                    same[label] = [other for other in members if other != label]
        return same

    def varying_parameters(self, positions: list[int]) -> list[str]:
        """Parameter columns whose values differ between the rows sharing one cell."""
        if len(positions) < 2:
            return []
        rows = self.res.iloc[positions]
        exclude = {*self.index, *self.columns, self.values}
        return [
            name
            for name in rows.columns
            if name not in RESULT_COLUMNS
            and name not in exclude
            and len({key_part(v) for v in rows[name]}) > 1
        ]


def _sorted_rows(
    res: pd.DataFrame,
    cells: dict[tuple[Key, Key], list[int]],
    row_keys: list[Key],
    column_keys: list[Key],
    sort: str,
) -> list[Key]:
    """Row keys ordered by the mean of metric `sort` over each row's cells (``-name``: descending).

    Rows without the figure go last. Raises ConfigurationError when the column is missing or
    not numeric.
    """
    descending = sort.startswith("-")
    name = sort[1:] if descending else sort
    if name not in res.columns:
        raise ConfigurationError(f"sort column {name!r} is not in the result frame")
    metric = numbers(res, name)
    if metric.isna().all() and not res[name].isna().all():
        raise ConfigurationError(f"sort column {name!r} is not numeric")

    def mean(row_key: Key) -> float:
        positions = [p for c in column_keys for p in cells.get((row_key, c), [])]
        found = metric.iloc[positions].dropna()
        return float(found.mean()) if len(found) else math.nan

    figures = {key: mean(key) for key in row_keys}
    known = [k for k in row_keys if not math.isnan(figures[k])]
    unknown = [k for k in row_keys if math.isnan(figures[k])]
    known.sort(key=lambda k: figures[k], reverse=descending)  # stable: ties keep frame order
    return known + unknown


def _group(
    res: pd.DataFrame, index: list[str], columns: list[str]
) -> tuple[dict[tuple[Key, Key], list[int]], list[Key], list[Key]]:
    """Row positions per (row key, column key), and both key lists in order of first appearance."""
    cells: dict[tuple[Key, Key], list[int]] = {}
    row_keys: dict[Key, None] = {}
    column_keys: dict[Key, None] = {}
    index_values = [res[name].tolist() for name in index]
    column_values = [res[name].tolist() for name in columns]
    for position in range(len(res)):
        row_key = tuple(key_part(values[position]) for values in index_values)
        col_key = tuple(key_part(values[position]) for values in column_values)
        row_keys.setdefault(row_key, None)
        column_keys.setdefault(col_key, None)
        cells.setdefault((row_key, col_key), []).append(position)
    return cells, list(row_keys), list(column_keys)


def _make_index(keys: list[Key], names: list[str]) -> pd.Index:
    if len(names) == 1:
        return pd.Index([key[0] if key else None for key in keys], name=names[0], dtype=object)
    return pd.MultiIndex.from_tuples(keys, names=names)
