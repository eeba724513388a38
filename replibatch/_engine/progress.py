"""The progress of a run: a tqdm bar, its colour, the final summary line, and the live view.

The runner calls three things: `open_progress` once the rows to run are known, `Progress.tick`
for every finished row and `Progress.finish` (or `Progress.close` when the run is interrupted).
Everything a user sees while a run goes lives here, so the engine stays free of display code.

- The bar turns ``warning`` (amber) when a row fails or is skipped for the budget and ``danger``
  (red) from 10 % failures; a notebook bar and a terminal bar alike.
- Mid-run spend is formatted by `format_usd`, the summary's formatter (no ``$0.0000``).
- The summary is its own line: in a terminal printed under the closed bar, in a notebook a
  `RunSummary` table that replaces the live view. The bar's postfix holds only running counts,
  and the terminal bar leaves out tqdm's rate so an 80-column terminal keeps a usable bar.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from replibatch._engine.runsummary import RunSummary, bar_state
from replibatch._table.summary import format_usd

__all__ = ["Progress", "bar_wanted", "in_notebook", "open_progress"]

# tqdm's colour per state; also valid CSS for the notebook bar (ipywidgets' bar_color).
COLOURS = {"success": "#2da44e", "warning": "#d4a72c", "danger": "#cf222e"}
# Without rate and remaining time, and with only failures and spend in the postfix, an 80-column
# terminal keeps ~20 cells of bar for a 150-row run with failures and skips (14 at 100,000 rows).
TERMINAL_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {elapsed}{postfix}"


def in_notebook() -> bool:
    """True inside a running Jupyter kernel (where tqdm.auto draws a widget bar). ipykernel
    merely imported (jupyter_client imports it to find its kernel spec) is not a notebook: there
    ``display`` has no front end and returns no handle to update."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def bar_wanted(progress: bool | None) -> bool:
    """The `progress=` option resolved: on by default in notebooks and on a terminal's stderr."""
    if progress is not None:
        return bool(progress)
    if in_notebook():
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class Progress:
    """A run's bar (and, in a notebook, its live view), fed one finished row at a time.

    `bar` is any object with tqdm's ``update``/``set_postfix_str``/``close`` and a ``colour``
    attribute; `live` a `replibatch._engine.live.LiveView` or None; `echo` writes the final summary
    line (None: nothing is printed, the live view shows the summary instead).
    """

    def __init__(
        self,
        bar: Any,
        *,
        cached: int = 0,
        live: Any = None,
        echo: Callable[[str], Any] | None = None,
        compact: bool = False,
    ) -> None:
        self.bar = bar
        self.compact = compact
        self.live = live
        self.echo = echo
        self.succeeded = 0
        self.failed = 0  # any status but succeeded and skipped_budget
        self.skipped = 0
        self.cached = cached
        self.spent = 0.0
        self.state = "success"
        if cached and not compact:
            bar.set_postfix_str(f"{cached} cached", refresh=False)

    def tick(self, row: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> None:
        """Count one finished row, recolour the bar when the run's state changes, redraw."""
        status = row.get("status")
        if status == "succeeded":
            self.succeeded += 1
        elif status == "skipped_budget":
            self.skipped += 1
        else:
            self.failed += 1
        cost = row.get("cost_usd")
        if isinstance(cost, (int, float)) and not math.isnan(cost):
            self.spent += float(cost)
        state = bar_state(self.succeeded + self.failed + self.skipped, self.failed, self.skipped)
        if state != self.state:
            self.state = state
            _set_colour(self.bar, COLOURS[state])
        self.bar.set_postfix_str(self.postfix(), refresh=False)
        self.bar.update(1)
        if self.live is not None:
            self.live.add(row, inputs, self)

    def postfix(self) -> str:
        """The running counts: ``118 ok 2 failed 3 skipped 40 cached $0.0123``; `compact` (a
        terminal) leaves out the ok and cached counts, which the bar's n/total already holds."""
        parts = [] if self.compact else [f"{self.succeeded} ok"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        if self.cached and not self.compact:
            parts.append(f"{self.cached} cached")
        parts.append(format_usd(self.spent))
        return " ".join(parts)

    def finish(self, summary: Mapping[str, Any]) -> RunSummary:
        """Close the bar in the colour of the run's outcome and show the summary once."""
        result = RunSummary.of(summary)
        _set_colour(self.bar, COLOURS[result.state])
        self.bar.set_postfix_str(self.postfix(), refresh=False)
        self.bar.close()
        if self.live is not None:
            self.live.finish(result)
        if self.echo is not None:
            self.echo(str(result))
        return result

    def close(self) -> None:
        """Close the bar without a summary (the run was interrupted or raised)."""
        self.bar.close()
        if self.live is not None:
            self.live.close()


def _set_colour(bar: Any, colour: str) -> None:
    try:
        bar.colour = colour
    except (AttributeError, TypeError, ValueError):
        pass  # an old tqdm or a stand-in without colours: counts still tell the story


def open_progress(
    total: int, done: int, *, progress: bool | None, live: bool | None = None
) -> Progress | None:
    """A Progress for `total` rows of which `done` came from the cache, or None when the bar is
    off (`progress=False`, or not a notebook and stderr not a terminal). `live` (default: on in
    a notebook) adds the live view under the bar; terminals keep the bar alone."""
    if not bar_wanted(progress):
        return None
    notebook = in_notebook()
    if notebook:
        from tqdm.notebook import tqdm as notebook_tqdm

        bar = notebook_tqdm(total=total, initial=done, unit="row", desc="replibatch")
        live_view = None
        if live is None or live:
            from replibatch._engine.live import LiveView

            live_view = LiveView.open(total=total)
        return Progress(bar, cached=done, live=live_view)
    from tqdm import tqdm

    terminal_bar = tqdm(
        total=total,
        initial=done,
        unit="row",
        desc="replibatch",
        dynamic_ncols=True,
        bar_format=TERMINAL_FORMAT,
    )

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return Progress(terminal_bar, cached=done, echo=echo, compact=True)
