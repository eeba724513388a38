"""Side-by-side comparison of results: a pivot that renders as a self-contained HTML table.

The grouping (which rows land in which cell, labels, footer figures, identical outputs) is
`replibatch._view.pivot.Pivot`, without HTML; this module draws it. Each row in a cell is drawn
by `replibatch._view.rowhtml.row_item`, as the report's cards are.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from replibatch._table.summary import format_usd
from replibatch._view.formats import format_seconds, shorten_versions
from replibatch._view.media import CSS, MediaRenderer
from replibatch._view.pivot import (
    ColumnStats,
    Pivot,
    as_columns,
    column_label,
    key_label,
    whole_number_columns,
)
from replibatch._view.rowhtml import param_badge, row_badges, row_item, same_badge
from replibatch._view.theme import PAGE_CSS
from replibatch.errors import ConfigurationError

__all__ = ["ColumnStats", "Comparison", "column_label", "compare"]


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
        self._pivot = Pivot.of(res, index=index, columns=columns, values=values, sort=sort)
        self._res = self._pivot.res
        self._footer = footer
        self._max_height = max_height
        self._index = index
        self._columns = columns
        self._values = values
        self._badges = badges
        self._renderer = MediaRenderer(max_text=max_text, max_px=max_px, grid=True)
        self.cells = self._pivot.cells
        self.row_keys = self._pivot.row_keys
        self.column_keys = self._pivot.column_keys
        self.frame = self._pivot.frame()

    def __repr__(self) -> str:
        return (
            f"<Comparison {len(self.row_keys)} rows × {len(self.column_keys)} columns "
            f"of {self._values!r}>"
        )

    def _repr_html_(self) -> str:
        return f"<style>{CSS}</style>{self._table_html()}"

    def column_labels(self) -> list[str]:
        """The header of each value column, in order (``name=value`` for parameters)."""
        return self._pivot.column_labels()

    def footer(self) -> list[ColumnStats]:
        """Per value column: rows, failures, mean cost and median latency of the rows in it."""
        return self._pivot.footer()

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
            head += f'<th scope="col" title="{esc(label)}">{esc(shorten_versions(label))}</th>'

        whole = whole_number_columns(self._res, self._index)
        body = []
        for row_key in self.row_keys:
            cells = "".join(
                f'<th scope="row">{self._renderer.render_text(key_label((part,), (name,), whole))}</th>'
                for name, part in zip(self._index, row_key, strict=False)
            )
            same = self._pivot.identical(row_key, labels)
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

    def _cell_html(self, positions: list[int], same_as: Sequence[str] = ()) -> str:
        if not positions:
            return '<span class="rb-none">—</span>'
        varying = self._pivot.varying_parameters(positions)
        items = []
        for _, row in self._res.iloc[positions].iterrows():
            badges = [param_badge(name, row[name]) for name in varying]
            if self._badges:
                badges += row_badges(row)
            if same_as:
                badges.append(same_badge(same_as))
            items.append(row_item(self._renderer, row, self._values, badges))
        return "".join(items)


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
    index_columns = as_columns("index", index)
    if not index_columns:
        raise ConfigurationError("index must name at least one column")
    column_columns = as_columns("columns", columns)
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
