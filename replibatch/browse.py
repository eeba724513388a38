"""An ipywidgets browser over a result frame: filter by parameter, page, look at one output large.

The widget tree is plain ipywidgets driven by observers, so it works (and is tested) without a
browser: set a filter's value or click a button in code and read what `detail` shows.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .compare import RESULT_COLUMNS, _key_part, format_seconds
from .errors import ConfigurationError
from .media import CSS, MediaRenderer, is_missing, local_path
from .rating_widgets import RatingControls
from .score import evaluation_columns
from .summary import format_usd

__all__ = ["Browser", "browse"]

ALL = -1  # the dropdown value meaning "no filter on this column"
MAX_CHOICES = 200  # columns with more distinct values (free text, ids) get no dropdown
_DETAIL_FIELDS = [
    "model",
    "status",
    "error",
    "latency_s",
    "queue_s",
    "predict_s",
    "cost_usd",
    "cost_basis",
    "cached",
    "input_token_count",
    "output_token_count",
    "time_to_first_token",
    "tokens_per_second",
    "prediction_id",
    "version",
]


def _widgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - ipywidgets is a dependency
        raise ImportError("replibatch.browse needs ipywidgets: pip install ipywidgets") from exc
    return ipywidgets


def _sorted_choices(keys: list[Any]) -> list[Any]:
    distinct = list(dict.fromkeys(keys))
    present = [k for k in distinct if k is not None]
    try:
        present = sorted(present)
    except TypeError:
        pass  # mixed types: keep the order they first appear in
    return present + ([None] if None in distinct else [])


def _display(value: Any) -> str:
    """Plain text for a cell: file names rather than reprs, ``40`` rather than ``40.0``."""
    if is_missing(value):
        return "—"
    if isinstance(value, float):  # also numpy floats; ints became floats in a concat with NaN
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return str(value)
    if isinstance(value, os.PathLike) or hasattr(value, "path"):
        return Path(str(getattr(value, "path", value))).name or str(value)
    if isinstance(value, str):
        path = local_path(value)
        return path.name if path is not None else value
    if isinstance(value, (list, tuple)):
        return ", ".join(_display(item) for item in value)
    return str(value)


def _preview(value: Any, width: int = 60) -> str:
    text = " ".join(_display(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _format_field(name: str, value: Any) -> str:
    if is_missing(value):
        return "—"
    if name in ("latency_s", "queue_s", "predict_s", "time_to_first_token"):
        number = float(value)
        return format_seconds(number) if math.isfinite(number) else "—"
    if name == "cost_usd":
        number = float(value)
        return format_usd(number) if math.isfinite(number) else "—"
    return _display(value)


class Browser:
    """The state and widgets of one browser; `widget` is what a notebook displays.

    `filters` maps column name -> Dropdown (values are indexes into `choices[column]`, or ALL);
    `rows` is the Select listing the current page (values are row positions in the frame);
    `detail` is the HTML showing the selected row.
    """

    def __init__(self, res: pd.DataFrame, *, page_size: int = 10) -> None:
        if not isinstance(res, pd.DataFrame):
            raise ConfigurationError(f"browse() needs a DataFrame, got {type(res).__name__}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ConfigurationError(f"page_size must be an int >= 1, got {page_size!r}")
        widgets = _widgets()
        self.res = res
        self.page_size = page_size
        self.page = 0
        self._renderer = MediaRenderer(max_text=None, max_px=None)
        # Scores, judgements and ratings are results: shown in their own table, not filtered on.
        self.scores = evaluation_columns(list(res.columns))
        self.parameters = [c for c in res.columns if c not in RESULT_COLUMNS and c not in self.scores]
        self._keys: dict[str, list[Any]] = {}
        self.choices: dict[str, list[Any]] = {}
        self.filters: dict[str, Any] = {}
        for column in [*self.parameters, "model", "status"]:
            if column not in res.columns or column in self.filters:
                continue
            keys = [_key_part(v) for v in res[column].tolist()]
            choices = _sorted_choices(keys)
            if not 2 <= len(choices) <= MAX_CHOICES:
                continue  # one value filters nothing; hundreds make an unusable dropdown
            counts = pd.Series(keys, dtype=object).value_counts(dropna=False)
            options = [("(all)", ALL)] + [
                (f"{_preview(choice, 40)} ({counts.get(choice, 0)})", i)
                for i, choice in enumerate(choices)
            ]
            dropdown = widgets.Dropdown(
                options=options,
                value=ALL,
                description=column,
                style={"description_width": "initial"},
                layout=widgets.Layout(width="auto"),
            )
            dropdown.observe(self._on_filter, names="value")
            self._keys[column] = keys
            self.choices[column] = choices
            self.filters[column] = dropdown

        self.prev_button = widgets.Button(description="◀ prev", layout=widgets.Layout(width="80px"))
        self.next_button = widgets.Button(description="next ▶", layout=widgets.Layout(width="80px"))
        self.prev_button.on_click(lambda _: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _: self.show_page(self.page + 1))
        self.page_label = widgets.Label()
        self.rows = widgets.Select(options=[], rows=page_size, layout=widgets.Layout(width="100%"))
        self.rows.observe(self._on_select, names="value")
        self.detail = widgets.HTML()
        # Thumbs / stars / best for the selected row, saved by cache key (rating_widgets.py).
        self.rating = RatingControls(res)
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    list(self.filters.values()), layout=widgets.Layout(flex_flow="row wrap")
                ),
                widgets.HBox([self.prev_button, self.page_label, self.next_button]),
                self.rows,
                *([self.rating.widget] if self.rating.enabled else []),
                self.detail,
            ]
        )
        self._matches = list(range(len(res)))
        self.refresh()

    # --- state --------------------------------------------------------------------------------

    def set_filter(self, column: str, value: Any) -> None:
        """Show only rows whose `column` equals `value` (None/NaN matches missing cells).

        Raises KeyError when `column` has no filter, ValueError when `value` is not among its choices.
        """
        key = _key_part(value)
        self.filters[column].value = self.choices[column].index(key)

    def clear_filters(self) -> None:
        """Remove every filter."""
        for dropdown in self.filters.values():
            dropdown.value = ALL

    def matching_positions(self) -> list[int]:
        """Row positions (0-based, in frame order) that pass every filter."""
        positions = range(len(self.res))
        for column, dropdown in self.filters.items():
            if dropdown.value != ALL:
                wanted = self.choices[column][dropdown.value]
                keys = self._keys[column]
                positions = [p for p in positions if keys[p] == wanted]
        return list(positions)

    @property
    def page_count(self) -> int:
        return max(1, math.ceil(len(self._matches) / self.page_size))

    # --- handlers -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-apply the filters and show their first page."""
        self._matches = self.matching_positions()
        self.show_page(0)

    def show_page(self, page: int) -> None:
        """List page `page` (clamped to the pages there are) and select its first row."""
        self.page = min(max(0, page), self.page_count - 1)
        start = self.page * self.page_size
        on_page = self._matches[start : start + self.page_size]
        self.rows.options = [(self._row_label(p), p) for p in on_page]
        self.page_label.value = (
            f"page {self.page + 1} of {self.page_count} · {len(self._matches)} of "
            f"{len(self.res)} rows"
        )
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.page_count - 1
        if on_page:
            if self.rows.value == on_page[0]:
                self.show_row(on_page[0])
            self.rows.value = on_page[0]  # triggers show_row through the observer
        else:
            self.detail.value = '<div class="rb-root"><i>No rows match the filters.</i></div>'

    def show_row(self, position: int) -> None:
        """Show row `position` large: its output, inputs, timing and cost."""
        self.detail.value = self.row_html(position)
        if self.rating.enabled:
            self.rating.show(position)

    def _on_filter(self, _change: dict[str, Any]) -> None:
        self.refresh()

    def _on_select(self, change: dict[str, Any]) -> None:
        if change["new"] is not None:
            self.show_row(change["new"])

    # --- rendering ----------------------------------------------------------------------------

    def _row_label(self, position: int) -> str:
        row = self.res.iloc[position]
        parts = [f"#{self.res.index[position]}"]
        for name in ("status", "model"):
            if name in row.index:
                parts.append(_preview(row[name], 36))
        parts += [f"{name}={_preview(row[name], 24)}" for name in self.parameters[:4]]
        if "output" in row.index:
            parts.append(_preview(row["output"], 60))
        return " · ".join(parts)

    def row_html(self, position: int) -> str:
        """The detail view of one row as a self-contained HTML fragment (every text escaped)."""
        esc = html.escape
        row = self.res.iloc[position]
        output = self._renderer.render(row["output"]) if "output" in row.index else ""

        def table(names: list[str]) -> str:
            cells = "".join(
                f'<tr><th scope="row">{esc(str(name))}</th>'
                f'<td><div class="rb-text">{esc(_format_field(name, row[name]))}</div></td></tr>'
                for name in names
            )
            return f'<table class="rb-table">{cells}</table>'

        results = [name for name in _DETAIL_FIELDS if name in row.index]
        return (
            f'<style>{CSS}</style><div class="rb-root">'
            f"<h4>row {esc(str(self.res.index[position]))}</h4>"
            # Output and its tables side by side when there is room, stacked when not.
            '<div style="display:flex; gap:24px; flex-wrap:wrap; align-items:flex-start">'
            f'<div class="rb-output" style="flex:1 1 480px; min-width:0">{output}</div>'
            '<div style="flex:0 1 auto">'
            f"<b>inputs</b>{table(self.parameters)}"
            + (f"<b>scores</b>{table(self.scores)}" if self.scores else "")
            + f"<b>result</b>{table(results)}</div></div></div>"
        )


def browse(res: pd.DataFrame, *, page_size: int = 10) -> Any:
    """An ipywidgets.Widget to page through `res`, filter it by parameter, model and status, and
    see one output large (images at full size, text in full, escaped) with its inputs, timing and
    cost. Columns with one or more than 200 distinct values get no filter.

    Raises ConfigurationError (a ValueError) for a non-frame or `page_size` < 1, ImportError
    when ipywidgets is missing.
    """
    browser = Browser(res, page_size=page_size)
    widget = browser.widget
    widget._replibatch_browser = browser  # keeps the state reachable from the displayed widget
    return widget
