"""Side-by-side comparison of results: a pivot that renders as a self-contained HTML table."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from replibatch._table.frame import ADDED_COLUMNS
from replibatch._table.summary import format_usd  # the one USD formatter (also imported from here by others)
from replibatch._view.media import CSS, MediaRenderer, is_missing
from replibatch._view.theme import PAGE_CSS
from replibatch.errors import ConfigurationError

__all__ = ["ColumnStats", "Comparison", "column_label", "compare"]

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


def _label(key: Key, names: Sequence[str] = (), whole: set[str] | None = None) -> str:
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
    return _key_part(value)


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
        sort: str | None = None,
        max_height: str = "75vh",
        footer: bool = True,
    ) -> None:
        self._res = res.reset_index(drop=True)
        self._footer = footer
        self._max_height = max_height
        self._index = index
        self._columns = columns
        self._values = values
        self._badges = badges
        self._renderer = MediaRenderer(max_text=max_text, max_px=max_px, grid=True)
        self.cells, self.row_keys, self.column_keys = _group(self._res, index, columns)
        if sort is not None:
            self.row_keys = _sorted_rows(self._res, self.cells, self.row_keys, self.column_keys, sort)
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

    def column_labels(self) -> list[str]:
        """The header of each value column, in order (``name=value`` for parameters)."""
        if not self._columns:
            return [self._values]
        whole = whole_number_columns(self._res, self._columns)
        return [column_label(self._columns, key, whole) for key in self.column_keys]

    def footer(self) -> list[ColumnStats]:
        """Per value column: rows, failures, mean cost and median latency of the rows in it."""
        stats = []
        cost = _numbers(self._res, "cost_usd")
        latency = _numbers(self._res, "latency_s")
        status = self._res["status"] if "status" in self._res.columns else None
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

    def to_html(self, path: str | Path | None = None) -> str:
        """A complete, self-contained HTML page (media embedded); also written to `path` if given.

        Raises OSError when `path` cannot be written.
        """
        title = html.escape(f"replibatch comparison: {self._values} by {', '.join(self._index)}")
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title><style>body {{ margin: 16px; }}{PAGE_CSS}{CSS}</style></head>"
            f"<body>{self._table_html()}</body></html>\n"
        )
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page

    def _table_html(self) -> str:
        esc = html.escape
        head = "".join(f'<th scope="col">{esc(name)}</th>' for name in self._index)
        labels = self.column_labels()
        for label in labels:
            head += f'<th scope="col" title="{esc(label)}">{esc(_shorten_versions(label))}</th>'

        whole = whole_number_columns(self._res, self._index)
        body = []
        for row_key in self.row_keys:
            cells = "".join(
                f'<th scope="row">{self._renderer.render_text(_label((part,), (name,), whole))}</th>'
                for name, part in zip(self._index, row_key, strict=False)
            )
            same = self._identical(row_key, labels)
            for col_key, label in zip(self.column_keys, labels, strict=False):
                positions = self.cells.get((row_key, col_key), [])
                cells += f"<td>{self._cell_html(positions, same.get(label, []))}</td>"
            body.append(f"<tr>{cells}</tr>")
        foot = ""
        if self._footer:
            foot = "".join(
                f'<th scope="row">{"per column" if i == 0 else ""}</th>' for i in range(len(self._index))
            )
            foot += "".join(f"<td>{_footer_html(stats)}</td>" for stats in self.footer())
            foot = f"<tfoot><tr>{foot}</tr></tfoot>"
        caption = (
            f'<p class="rb-caption">{len(self.row_keys):,} rows × {len(labels):,} columns of '
            f"{esc(self._values)}</p>"
        )
        return (
            f'<div class="rb-root">{caption}'
            f'<div class="rb-scroll-box" style="max-height: {esc(self._max_height)}">'
            '<table class="rb-table">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
            f"{foot}</table></div></div>"
        )

    def _identical(self, row_key: Key, labels: list[str]) -> dict[str, list[str]]:
        """For each column of this row, the other columns whose single output is the same."""
        if len(self.column_keys) < 2 or self._values not in self._res.columns:
            return {}
        values = self._res[self._values]
        status = self._res["status"] if "status" in self._res.columns else None
        groups: dict[Any, list[str]] = {}
        for col_key, label in zip(self.column_keys, labels, strict=False):
            positions = self.cells.get((row_key, col_key), [])
            if len(positions) != 1:
                continue  # several samples in a cell: "the same" would be ambiguous
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

    def _cell_html(self, positions: list[int], same_as: Sequence[str] = ()) -> str:
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
            if same_as:
                badges.append(_same_badge(same_as))
            if badges:
                parts.append(f'<div class="rb-badges">{"".join(badges)}</div>')
            items.append(f'<div class="rb-item">{"".join(parts)}</div>')
        return "".join(items)


@dataclass(frozen=True)
class ColumnStats:
    """The footer figures of one comparison column (NaN where no row has the figure)."""

    rows: int
    failed: int
    mean_cost_usd: float
    p50_latency_s: float


def _footer_html(stats: ColumnStats) -> str:
    parts = [
        (f"mean cost {format_usd(stats.mean_cost_usd)}" if math.isfinite(stats.mean_cost_usd)
         else "mean cost —"),
        f"p50 {format_seconds(stats.p50_latency_s)}" if math.isfinite(stats.p50_latency_s) else "p50 —",
        f"{stats.failed} of {stats.rows} failed" if stats.failed else f"{stats.rows} ok",
    ]
    bad = ' class="rb-error"' if stats.failed else ""
    return (
        f"<div>{parts[0]}</div><div>{parts[1]}</div><div{bad}>{html.escape(parts[2])}</div>"
    )


def _same_badge(others: Sequence[str]) -> str:
    names = [_shorten_versions(o) for o in others]
    text = f"same as {names[0]}" if len(names) == 1 else f"same as {len(names)} others"
    title = "identical output in: " + ", ".join(others)
    return (
        f'<span class="rb-badge rb-same" title="{html.escape(title)}">{html.escape(text[:60])}</span>'
    )


def _numbers(res: pd.DataFrame, column: str) -> pd.Series:
    if column not in res.columns:
        return pd.Series(math.nan, index=res.index, dtype=float)
    return pd.to_numeric(res[column], errors="coerce").astype(float)


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
    metric = _numbers(res, name)
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
    sort: str | None = None,
    max_height: str = "75vh",
    footer: bool = True,
    only_different: bool = False,
) -> Comparison:
    """Pivot `res` into a side-by-side view of `values`, one row per `index`, one column per `columns`.

    Rows sharing a cell (samples, other varying parameters) are all shown in it, labelled by the
    parameters that differ. In Jupyter it renders as a table with images, audio and video embedded
    from the local file store (images shrunk to `max_px`), text escaped and folded past
    `max_text` characters, and, with `badges`, each row's status, latency, cost and cache state.
    Parameter columns are headed ``name=value``; several files in one cell show as a grid of
    thumbnails (click one to enlarge it); outputs identical to another column's in the same row
    get a "same as" badge; with `footer`, a last row gives each column's mean cost, median latency
    and failures.
    The table scrolls inside its own box of at most `max_height` (a CSS length) so the header row,
    the index column and the footer stay in view. `sort`: a numeric column (``latency_s``,
    ``cost_usd``, a score); rows are ordered by its mean across the row, ``-name`` for descending.
    With `only_different`, only the index rows whose `values` are not the same in every column
    are shown (`replibatch._evaluate.diff.differing_rows`).

    Raises ConfigurationError (a ValueError) when a named column is missing from `res`, a
    column is used both as index and as columns, or `sort` names a missing or non-numeric column.
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
        from replibatch._evaluate.diff import differing_rows

        res = res[differing_rows(res, index_columns, column_columns, values)]
    return Comparison(
        res,
        index=index_columns,
        columns=column_columns,
        values=values,
        badges=badges,
        max_text=max_text,
        max_px=max_px,
        sort=sort,
        max_height=max_height,
        footer=footer,
    )
