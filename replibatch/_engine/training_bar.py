"""The progress bar of ``rb.train``: whole trainings plus the running ones' own percentages.

A sweep is a handful of trainings that each take minutes, so counting finished rows alone
would sit at 0% for most of the run. The bar's position is the finished trainings plus, for
each one running, the fraction its logs report (`replibatch._engine.training_progress`). Shown
under the same rule as ``rb.run``'s bar (`replibatch._engine.progress.bar_wanted`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from replibatch._engine.progress import bar_wanted, in_notebook

__all__ = ["TrainingBar", "open_training_bar"]


class TrainingBar:
    """Feeds a tqdm-like `bar` (``n``, ``refresh``, ``set_postfix_str``, ``close``)."""

    def __init__(self, bar: Any, *, total: int, cached: int) -> None:
        self.bar = bar
        self.total = total
        self.done = cached
        self.cached = cached
        self.failed = 0
        self.spent = 0.0
        self.running: dict[int, float] = {}  # row position -> fraction its logs report
        self._draw()

    def advance(self, position: int, fraction: float | None) -> None:
        """A running training's logs report `fraction` (None: nothing reported yet)."""
        if fraction is not None and fraction > self.running.get(position, 0.0):
            self.running[position] = fraction
            self._draw()

    def finish_row(self, position: int, row: Mapping[str, Any]) -> None:
        """One training finished (any status)."""
        self.running.pop(position, None)
        self.done += 1
        if row.get("status") != "succeeded":
            self.failed += 1
        cost = row.get("cost_usd")
        if isinstance(cost, (int, float)) and not math.isnan(cost):
            self.spent += float(cost)
        self._draw()

    def _draw(self) -> None:
        self.bar.n = round(min(self.total, self.done + sum(self.running.values())), 2)
        parts = [f"{self.done - self.failed} ok"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cached:
            parts.append(f"{self.cached} cached")
        parts.append(f"{len(self.running)} training" if self.running else "")
        parts.append(f"${self.spent:.4f}")
        self.bar.set_postfix_str(" ".join(p for p in parts if p), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def open_training_bar(total: int, cached: int, *, progress: bool | None) -> TrainingBar | None:
    """The bar for `total` trainings of which `cached` came from the cache, or None when the
    bar is off (``progress=False``, or not a notebook and stderr not a terminal)."""
    if not bar_wanted(progress):
        return None
    bar: Any
    if in_notebook():
        from tqdm.notebook import tqdm as notebook_tqdm  # type: ignore[import-untyped,unused-ignore]

        bar = notebook_tqdm(total=total, unit="training", desc="train")
    else:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

        bar = tqdm(total=total, unit="training", desc="train", dynamic_ncols=True)
    return TrainingBar(bar, total=total, cached=cached)
