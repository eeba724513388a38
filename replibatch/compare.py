"""Side-by-side comparison of results: a pivot that renders as a self-contained HTML table."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigurationError
from .frame import ADDED_COLUMNS
from .media import CSS, MediaRenderer, is_missing
from .summary import format_usd  # the one USD formatter (also imported from here by others)

__all__ = ["Comparison", "compare"]

# Columns the run adds; anything else is a parameter the user chose.
RESULT_COLUMNS = ADDED_COLUMNS

Key = tuple[Any, ...]


def _as_list(name: str, value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    columns = list(value)
    if not columns:
        raise ConfigurationError(f"{name} must name at least one column")
    return columns


def _key_part(value: Any) -> Any:
    """A hashable, NaN-safe stand-in for a cell value used as a group key."""
    if is_missing(value):
        return None
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


_VERSION_HASH = re.compile(r"(?<=:)([0-9a-f]{8})[0-9a-f]{56}\b")


def _shorten_versions(text: str) -> str:
    """``owner/name:<64 hex>`` -> ``owner/name:<8 hex>…`` (the full label stays in a tooltip)."""
    return _VERSION_HASH.sub(r"\1…", text)


def _label(key: Key) -> str:
    return " · ".join("—" if part is None else str(part) for part in key)


class Comparison:
    """A pivot of a result frame: `frame` for code, `_repr_html_`/`to_html` for people.

    `frame` cells hold the value of the one row that landed there, a tuple of the values when
    several rows did (e.g. samples), or None when no row did.
    """

    def __init__(
        self,
        res: pd.DataFrame,
        *,
        index: list[str],
        columns: list[str],
        values: str,
        badges: bool,
        max_text: int | None,
        max_px: int | None,
    ) -> None:
        self._res = res.reset_index(drop=True)
        self._index = index
        self._columns = columns
        self._values = values
        self._badges = badges
        self._renderer = MediaRenderer(max_text=max_text, max_px=max_px)
        self.cells, self.row_keys, self.column_keys = _group(self._res, index, columns)
        self.frame = self._build_frame()

    def _build_frame(self) -> pd.DataFrame:
        rows = _make_index(self.row_keys, self._index)
        if self._columns:
            cols = _make_index(self.column_keys, self._columns)
        else:
            cols = pd.Index([self._values], dtype=object)
        empty = np.full((len(rows), len(cols)), None, dtype=object)
        frame = pd.DataFrame(empty, index=rows, columns=cols, dtype=object)
        row_at = {key: position for position, key in enumerate(self.row_keys)}
        col_at = {key: position for position, key in enumerate(self.column_keys)}
        values = self._res[self._values]
        for (row_key, col_key), positions in self.cells.items():
            cell = values.iloc[positions]
            frame.iat[row_at[row_key], col_at[col_key]] = (
                cell.iat[0] if len(positions) == 1 else tuple(cell)
            )
        return frame

    def __repr__(self) -> str:
        return (
            f"<Comparison {len(self.row_keys)} rows × {len(self.column_keys)} columns "
            f"of {self._values!r}>"
        )

    def _repr_html_(self) -> str:
        return f"<style>{CSS}</style>{self._table_html()}"

    def to_html(self, path: str | Path | None = None) -> str:
        """A complete, self-contained HTML page (media embedded); also written to `path` if given.

        Raises OSError when `path` cannot be written.
        """
        title = html.escape(f"replibatch comparison: {self._values} by {', '.join(self._index)}")
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title><style>body {{ margin: 16px; }}{CSS}</style></head>"
            f"<body>{self._table_html()}</body></html>\n"
        )
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def _table_html(self) -> str:
        esc = html.escape
        head = "".join(f'<th scope="col">{esc(name)}</th>' for name in self._index)
        for key in self.column_keys:
            label = _label(key) if self._columns else self._values
            head += f'<th scope="col" title="{esc(label)}">{esc(_shorten_versions(label))}</th>'

        body = []
        for row_key in self.row_keys:
            cells = "".join(
                f'<th scope="row">{self._renderer.render_text(_label((part,)))}</th>'
                for part in row_key
            )
            for col_key in self.column_keys:
                positions = self.cells.get((row_key, col_key), [])
                cells += f"<td>{self._cell_html(positions)}</td>"
            body.append(f"<tr>{cells}</tr>")
        return (
            '<div class="rb-root"><table class="rb-table">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )

    def _cell_html(self, positions: list[int]) -> str:
        if not positions:
            return '<span class="rb-none">—</span>'
        rows = self._res.iloc[positions]
        varying = _varying_parameters(rows, exclude={*self._index, *self._columns, self._values})
        items = []
        for _, row in rows.iterrows():
            parts = [self._renderer.render(row[self._values])]
            error = row.get("error")
            if row.get("status", "succeeded") != "succeeded" and not is_missing(error):
                parts.append(f'<div class="rb-error">{html.escape(str(error)[:500])}</div>')
            badges = [_param_badge(name, row[name]) for name in varying]
            if self._badges:
                badges += _row_badges(row)
            if badges:
                parts.append(f'<div class="rb-badges">{"".join(badges)}</div>')
            items.append(f'<div class="rb-item">{"".join(parts)}</div>')
        return "".join(items)


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
        row_key = tuple(_key_part(values[position]) for values in index_values)
        col_key = tuple(_key_part(values[position]) for values in column_values)
        row_keys.setdefault(row_key, None)
        column_keys.setdefault(col_key, None)
        cells.setdefault((row_key, col_key), []).append(position)
    return cells, list(row_keys), list(column_keys)


def _make_index(keys: list[Key], names: list[str]) -> pd.Index:
    if len(names) == 1:
        return pd.Index([key[0] if key else None for key in keys], name=names[0], dtype=object)
    return pd.MultiIndex.from_tuples(keys, names=names)


def _varying_parameters(rows: pd.DataFrame, *, exclude: set[str]) -> list[str]:
    """Parameter columns whose values differ between the rows sharing one cell."""
    if len(rows) < 2:
        return []
    return [
        name
        for name in rows.columns
        if name not in RESULT_COLUMNS
        and name not in exclude
        and len({_key_part(v) for v in rows[name]}) > 1
    ]


def _param_badge(name: str, value: Any) -> str:
    return f'<span class="rb-badge rb-param">{html.escape(f"{name}={value}")}</span>'


def finite_number(value: Any) -> float | None:
    """`value` as a finite float, or None (NaN, None, text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_seconds(seconds: float) -> str:
    """3 significant digits, e.g. ``0.412 s``, ``3.21 s``, ``41.2 s``."""
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:,.0f} s"


def _row_badges(row: pd.Series) -> list[str]:
    badges = []
    status = row.get("status")
    if isinstance(status, str) and status != "succeeded":
        badges.append(f'<span class="rb-badge rb-bad">{html.escape(status)}</span>')
    latency = finite_number(row.get("latency_s"))
    if latency is not None:
        badges.append(f'<span class="rb-badge" title="latency">{format_seconds(latency)}</span>')
    cost = finite_number(row.get("cost_usd"))
    if cost is not None:
        basis = row.get("cost_basis")
        title = html.escape(str(basis)) if isinstance(basis, str) else "estimated cost"
        badges.append(f'<span class="rb-badge" title="{title}">{format_usd(cost)}</span>')
    cached = row.get("cached")
    if not is_missing(cached) and bool(cached):
        badges.append('<span class="rb-badge rb-cached">cached</span>')
    return badges


def compare(
    res: pd.DataFrame,
    index: str | Sequence[str] = "prompt",
    columns: str | Sequence[str] | None = "model",
    values: str = "output",
    *,
    badges: bool = True,
    max_text: int | None = 400,
    max_px: int | None = 384,
    only_different: bool = False,
) -> Comparison:
    """Pivot `res` into a side-by-side view of `values`, one row per `index`, one column per `columns`.

    Rows sharing a cell (samples, other varying parameters) are all shown in it, labelled by the
    parameters that differ. In Jupyter it renders as a table with images, audio and video embedded
    from the local file store (images shrunk to `max_px`), text escaped and folded past
    `max_text` characters, and, with `badges`, each row's status, latency, cost and cache state.
    With `only_different`, only the index rows whose `values` are not the same in every column
    are shown (`replibatch.diff.differing_rows`).

    Raises ConfigurationError (a ValueError) when a named column is missing from `res` or a
    column is used both as index and as columns.
    """
    if not isinstance(res, pd.DataFrame):
        raise ConfigurationError(f"compare() needs a DataFrame, got {type(res).__name__}")
    index_columns = _as_list("index", index)
    if not index_columns:
        raise ConfigurationError("index must name at least one column")
    column_columns = _as_list("columns", columns)
    for name in [*index_columns, *column_columns, values]:
        if name not in res.columns:
            raise ConfigurationError(
                f"column {name!r} is not in the result frame (columns: {', '.join(map(str, res.columns))})"
            )
    overlap = set(index_columns) & set(column_columns)
    if overlap:
        raise ConfigurationError(f"column {sorted(overlap)[0]!r} is used as both index and columns")
    if only_different:
        from .diff import differing_rows

        res = res[differing_rows(res, index_columns, column_columns, values)]
    return Comparison(
        res,
        index=index_columns,
        columns=column_columns,
        values=values,
        badges=badges,
        max_text=max_text,
        max_px=max_px,
    )
