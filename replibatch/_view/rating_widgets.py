"""Rating controls for the notebook browser: thumbs, 1-5 stars and "best of this prompt".

`RatingControls` shows the stored ratings of one row of a result frame and writes every click
through `replibatch._evaluate.ratings.rate`, so what is clicked persists in the cache directory. It is plain
ipywidgets driven by observers: tests set a control's value in code and read the store back.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from replibatch._evaluate.ratings import rate, ratings
from replibatch._store.cache import ResultCache
from replibatch._table.frame import CACHE_KEY_COLUMN

__all__ = ["RatingControls"]

_NONE = 0  # the "not rated" option of the thumbs and stars toggles


class RatingControls:
    """Controls bound to `res`; `show(position)` points them at one row, `widget` is the HBox.

    `thumbs` (ToggleButtons: 0 none, 1 up, -1 down), `stars` (ToggleButtons 0-5, 0 none) and
    `best` (a ToggleButton: best of the row's prompt). `status` says what was saved. Raises
    ImportError without ipywidgets.
    """

    def __init__(
        self,
        res: pd.DataFrame,
        *,
        cache: bool | str | os.PathLike[str] | ResultCache = True,
    ) -> None:
        import ipywidgets as widgets

        self.res = res
        self.cache = cache
        self.position: int | None = None
        self._loading = False
        # Font Awesome icons (bundled with ipywidgets) rather than emoji, which many systems
        # lack a font for.
        self.thumbs = widgets.ToggleButtons(
            options=[("–", _NONE), ("", 1), ("", -1)], value=_NONE, description="rate",
            icons=["", "thumbs-up", "thumbs-down"],
            tooltips=["not rated", "thumbs up", "thumbs down"],
            style={"button_width": "48px", "description_width": "initial"},
        )
        self.stars = widgets.ToggleButtons(
            options=[("–", _NONE)] + [(str(n), n) for n in range(1, 6)], value=_NONE,
            icons=[""] + ["star"] * 5,
            tooltips=["no stars"] + [f"{n} of 5 stars" for n in range(1, 6)],
            style={"button_width": "60px"},
        )
        self.best = widgets.ToggleButton(value=False, description="best of this prompt",
                                         icon="trophy", layout=widgets.Layout(width="auto"))
        self.status = widgets.Label()
        for control in (self.thumbs, self.stars, self.best):
            control.observe(self._on_change, names="value")
        self.widget = widgets.HBox([self.thumbs, self.stars, self.best, self.status],
                                   layout=widgets.Layout(flex_flow="row wrap"))
        self.enabled = CACHE_KEY_COLUMN in res.columns

    def show(self, position: int) -> None:
        """Point the controls at row `position` and show its stored ratings."""
        self.position = position
        key = self.res[CACHE_KEY_COLUMN].iat[position] if self.enabled else None
        usable = isinstance(key, str)
        for control in (self.thumbs, self.stars, self.best):
            control.disabled = not usable
        self._loading = True
        try:
            if not usable:
                self.thumbs.value, self.stars.value, self.best.value = _NONE, _NONE, False
                self.status.value = "this row cannot be rated (no cache key)"
                return
            stored = ratings(self.res.iloc[[position]], cache=self.cache).iloc[0]
            thumbs = stored["rating_thumbs"]
            self.thumbs.value = _NONE if pd.isna(thumbs) else (1 if thumbs == 1 else -1)
            stars = stored["rating_stars"]
            self.stars.value = _NONE if pd.isna(stars) else int(stars)
            self.best.value = bool(stored["rating_best"] == 1)
            self.status.value = ""
        finally:
            self._loading = False

    def _on_change(self, change: dict[str, Any]) -> None:
        if self._loading or self.position is None:
            return
        label = self.res.index[self.position]
        owner = change["owner"]
        if owner is self.thumbs:
            value = None if change["new"] == _NONE else change["new"] == 1
            rate(self.res, label, value, kind="thumbs", cache=self.cache)
        elif owner is self.stars:
            value = None if change["new"] == _NONE else int(change["new"])
            rate(self.res, label, value, kind="stars", cache=self.cache)
        else:
            rate(self.res, label, "best" if change["new"] else None, kind="best", cache=self.cache)
        self.status.value = f"saved for row {label}"
