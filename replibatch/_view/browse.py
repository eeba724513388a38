"""An ipywidgets browser over a result frame: filter, search, page, look at one output large or at
every model's output for one prompt side by side.

The widget tree is plain ipywidgets driven by observers, so it works (and is tested) without a
browser: set a filter's value or click a button in code and read what `detail` shows. Images go
over the comm shrunk to `max_px` (a "full size" toggle sends the originals on demand), so a
notebook does not fill up with megabytes per click. Displayed without a live kernel (a saved or
exported notebook), the widget's fallback representation says it needs one.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from replibatch._evaluate.score import evaluation_columns
from replibatch._view.browse_box import BrowserBox
from replibatch._view.browse_box import widgets as ipywidgets
from replibatch._view.browse_text import display, format_field, preview, preview_ends, sorted_choices
from replibatch._view.compare import compare
from replibatch._view.media import CSS, MediaRenderer, is_missing
from replibatch._view.pivot import RESULT_COLUMNS, key_part
from replibatch._view.rating_widgets import RatingControls
from replibatch.errors import ConfigurationError

__all__ = ["Browser", "browse"]

ALL = -1  # the dropdown value meaning "no filter on this column"
DEFAULT_MAX_PX = 768  # longest side of images sent to the browser unless "full size" is on
_DETAIL_CSS = """
.rb-root.rb-detail { line-height: 1.35; }
.rb-root.rb-detail h4 { margin: 4px 0 6px; }
.rb-root.rb-detail table.rb-fields { border-collapse: collapse; font-size: 12px; margin-bottom: 8px; }
.rb-root.rb-detail table.rb-fields th, .rb-root.rb-detail table.rb-fields td {
  padding: 1px 8px 1px 0; text-align: left; border: 0; border-bottom: 1px solid var(--rb-border);
  min-width: 0;
  line-height: 1.35; vertical-align: top; background: transparent; color: inherit; }
.rb-root.rb-detail table.rb-fields th { color: var(--rb-muted); font-weight: 400; white-space: nowrap; }
.rb-root.rb-detail table.rb-fields td { max-width: 360px; overflow-wrap: anywhere; }
"""
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


class Browser:
    """The state and widgets of one browser; `widget` is what a notebook displays.

    `filters` maps column name -> Dropdown (values are indexes into `choices[column]`, or ALL);
    `rows` is the Select listing the current page (values are row positions in the frame);
    `detail` is the HTML showing the selected row.
    """

    def __init__(
        self, res: pd.DataFrame, *, page_size: int = 10, max_px: int | None = DEFAULT_MAX_PX
    ) -> None:
        if not isinstance(res, pd.DataFrame):
            raise ConfigurationError(f"browse() needs a DataFrame, got {type(res).__name__}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ConfigurationError(f"page_size must be an int >= 1, got {page_size!r}")
        widgets = ipywidgets()
        self.res = res
        self.page_size = page_size
        self.page = 0
        self.max_px = max_px
        self._renderer = MediaRenderer(max_text=None, max_px=max_px)
        self._full_renderer = MediaRenderer(max_text=None, max_px=None)
        # Scores, judgements and ratings are results: shown in their own table, not filtered on.
        self.scores = evaluation_columns(list(res.columns))
        self.parameters = [c for c in res.columns if c not in RESULT_COLUMNS and c not in self.scores]
        # Row labels name only what tells rows apart: parameters with more than one value.
        self.varying = [
            c for c in self.parameters if res[c].map(key_part).nunique(dropna=False) > 1
        ]
        self.index_column = "prompt" if "prompt" in res.columns else (
            self.parameters[0] if self.parameters else None
        )
        self._search_text = [self._searchable(p) for p in range(len(res))]
        self.selected: int | None = None
        self._keys: dict[str, list[Any]] = {}
        self.choices: dict[str, list[Any]] = {}
        self.filters: dict[str, Any] = {}
        for column in [*self.parameters, "model", "status"]:
            if column not in res.columns or column in self.filters:
                continue
            keys = [key_part(v) for v in res[column].tolist()]
            choices = sorted_choices(keys)
            if not 2 <= len(choices) <= MAX_CHOICES:
                continue  # one value filters nothing; hundreds make an unusable dropdown
            counts = pd.Series(keys, dtype=object).value_counts(dropna=False)
            options = [("(all)", ALL)] + [
                (f"{preview_ends(choice, 48)} ({counts.get(choice, 0)})", i)
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

        self.search = widgets.Text(
            placeholder="search prompts and outputs",
            continuous_update=False,
            layout=widgets.Layout(width="280px"),
        )
        self.search.observe(self._on_filter, names="value")
        self.prev_button = widgets.Button(description="◀ page", layout=widgets.Layout(width="80px"))
        self.next_button = widgets.Button(description="page ▶", layout=widgets.Layout(width="80px"))
        self.prev_button.on_click(lambda _: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _: self.show_page(self.page + 1))
        self.prev_row = widgets.Button(description="◀", tooltip="previous row",
                                       layout=widgets.Layout(width="40px"))
        self.next_row = widgets.Button(description="▶", tooltip="next row",
                                       layout=widgets.Layout(width="40px"))
        self.prev_row.on_click(lambda _: self.step(-1))
        self.next_row.on_click(lambda _: self.step(1))
        self.page_label = widgets.Label()
        self.all_models = widgets.ToggleButton(
            value=False, description="this prompt, every model",
            tooltip="show every row with the selected row's prompt side by side",
            layout=widgets.Layout(width="auto"),
        )
        self.all_models.observe(lambda _change: self._redraw(), names="value")
        self.full_size = widgets.ToggleButton(
            value=False, description="full size", tooltip="send images at their original size",
            layout=widgets.Layout(width="auto"),
        )
        self.full_size.observe(lambda _change: self._redraw(), names="value")
        self.rows = widgets.Select(options=[], rows=page_size, layout=widgets.Layout(width="100%"))
        self.rows.observe(self._on_select, names="value")
        self.detail = widgets.HTML()
        # Thumbs / stars / best for the selected row, saved by cache key (rating_widgets.py).
        self.rating = RatingControls(res)
        self.widget = BrowserBox(
            [
                widgets.HBox(
                    [self.search, *self.filters.values()],
                    layout=widgets.Layout(flex_flow="row wrap"),
                ),
                widgets.HBox([self.prev_button, self.page_label, self.next_button]),
                self.rows,
                widgets.HBox([self.prev_row, self.next_row, self.all_models, self.full_size]),
                *([self.rating.widget] if self.rating.enabled else []),
                self.detail,
            ]
        )
        self.widget._replibatch_browser = self
        self.widget.add_class("rb-browser")  # what the no-kernel note's CSS looks for
        self._matches = list(range(len(res)))
        self.refresh()

    # --- state --------------------------------------------------------------------------------

    def set_filter(self, column: str, value: Any) -> None:
        """Show only rows whose `column` equals `value` (None/NaN matches missing cells).

        Raises KeyError when `column` has no filter, ValueError when `value` is not among its choices.
        """
        key = key_part(value)
        self.filters[column].value = self.choices[column].index(key)

    def clear_filters(self) -> None:
        """Remove every filter."""
        for dropdown in self.filters.values():
            dropdown.value = ALL

    def matching_positions(self) -> list[int]:
        """Row positions (0-based, in frame order) that pass every filter and the search (every
        word of it, case-insensitive, found in the row's parameters, output or error)."""
        positions: Any = range(len(self.res))
        words = self.search.value.casefold().split()
        if words:
            positions = [
                p for p in positions if all(word in self._search_text[p] for word in words)
            ]
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
        """Show row `position` large: its output, inputs, timing and cost (or, with
        `all_models` on, every row sharing its prompt side by side)."""
        self.selected = position
        if self.all_models.value:
            self.detail.value = self.prompt_html(position)
        else:
            self.detail.value = self.row_html(position)
        if self.rating.enabled:
            self.rating.show(position)

    def step(self, delta: int) -> None:
        """Select the row `delta` places after the selected one among the matches, across pages."""
        if not self._matches:
            return
        current = self._matches.index(self.selected) if self.selected in self._matches else 0
        target = min(max(0, current + delta), len(self._matches) - 1)
        page = target // self.page_size
        if page != self.page:
            self.show_page(page)
        self.rows.value = self._matches[target]

    def _redraw(self) -> None:
        if self.selected is not None:
            self.show_row(self.selected)

    def _on_filter(self, _change: dict[str, Any]) -> None:
        self.refresh()

    def _on_select(self, change: dict[str, Any]) -> None:
        if change["new"] is not None:
            self.show_row(change["new"])

    # --- rendering ----------------------------------------------------------------------------

    def _searchable(self, position: int) -> str:
        row = self.res.iloc[position]
        names = [*self.parameters, "output", "error", "model"]
        return " ".join(display(row[n]) for n in names if n in row.index).casefold()

    def _row_label(self, position: int) -> str:
        """``#index · status · model · <varying parameters> · output``: the prompt (long text)
        first and widest, so rows that differ only in one parameter still read apart."""
        row = self.res.iloc[position]
        parts = [f"#{self.res.index[position]}"]
        if "status" in row.index and row["status"] != "succeeded":
            parts.append(preview(row["status"], 20))
        if "model" in row.index and self.res["model"].nunique() > 1:
            parts.append(preview(row["model"], 36))
        for name in self.varying:
            if is_missing(row[name]):
                continue  # a parameter this row does not use (text rows in an image sweep)
            width = 70 if name == self.index_column else 24
            value = preview(row[name], width)
            parts.append(value if name == self.index_column else f"{name}={value}")
        if "output" in row.index:
            parts.append(preview(row["output"], 50))
        return " · ".join(parts)

    @property
    def renderer(self) -> MediaRenderer:
        """The renderer for the detail: shrunk images unless "full size" is on."""
        return self._full_renderer if self.full_size.value else self._renderer

    def prompt_html(self, position: int) -> str:
        """Every row sharing row `position`'s prompt, one column per model (and per varying
        parameter), as a comparison."""
        if self.index_column is None:
            return self.row_html(position)
        key = key_part(self.res.iloc[position][self.index_column])
        same = self.res[self.res[self.index_column].map(key_part) == key]
        # One column per model; other parameters that differ label the rows inside each cell.
        varying = [c for c in ["model", *self.varying] if c in same.columns and c != self.index_column
                   and same[c].map(key_part).nunique(dropna=False) > 1]
        columns = varying[:1]
        view = compare(same, index=self.index_column, columns=columns or None,
                       max_text=None, max_px=None if self.full_size.value else min(self.max_px or 384, 384))
        return view._repr_html_()

    def row_html(self, position: int) -> str:
        """The detail view of one row as a self-contained HTML fragment (every text escaped)."""
        esc = html.escape
        row = self.res.iloc[position]
        output = self.renderer.render(row["output"]) if "output" in row.index else ""

        def table(names: list[str]) -> str:
            cells = "".join(
                f'<tr><th scope="row">{esc(str(name))}</th>'
                f"<td>{esc(format_field(name, row[name]))}</td></tr>"
                for name in names
            )
            return f'<table class="rb-fields">{cells}</table>'

        results = [name for name in _DETAIL_FIELDS if name in row.index]
        return (
            f'<style>{CSS}{_DETAIL_CSS}</style><div class="rb-root rb-detail">'
            f"<h4>row {esc(str(self.res.index[position]))}</h4>"
            # Output and its tables side by side when there is room, stacked when not.
            '<div style="display:flex; gap:24px; flex-wrap:wrap; align-items:flex-start">'
            f'<div class="rb-output" style="flex:1 1 480px; min-width:0">{output}</div>'
            '<div style="flex:0 1 auto">'
            f"<b>inputs</b>{table([p for p in self.parameters if not is_missing(row[p])])}"
            + (f"<b>scores</b>{table(self.scores)}" if self.scores else "")
            + f"<b>result</b>{table(results)}</div></div></div>"
        )


def browse(res: pd.DataFrame, *, page_size: int = 10, max_px: int | None = DEFAULT_MAX_PX) -> Any:
    """An ipywidgets.Widget to page through `res`, filter it by parameter, model and status,
    search its prompts and outputs, step row by row (◀/▶), and see one output large (text in
    full, escaped; images up to `max_px` pixels, "full size" sends the originals) with its inputs,
    timing and cost, or, "this prompt, every model", all rows sharing its prompt side by side.
    Row labels show the parameters that vary. Columns with one or more than 200 distinct values
    get no filter. Without a live kernel its fallback text says it needs one.

    Raises ConfigurationError (a ValueError) for a non-frame or `page_size` < 1, ImportError
    when ipywidgets is missing.
    """
    return Browser(res, page_size=page_size, max_px=max_px).widget
