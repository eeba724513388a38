"""The live view a notebook shows under a run's progress bar, replaced by the summary at the end.

It keeps only the last few finished rows and failures (fixed-size deques) and redraws at most
every `interval` seconds, so memory and redraw cost stay flat however many rows a run has: a
100,000-row run holds and renders the same handful of rows as a 10-row run. It draws through an
IPython display handle (``display(..., display_id=True)`` then ``update``): plain HTML output, so
a saved notebook keeps the final summary, not a dead widget.
"""

from __future__ import annotations

import html
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from replibatch._table.summary import format_usd
from replibatch._view.media import CSS, MediaRenderer, is_missing

__all__ = ["LiveView", "Recent"]

RECENT_ROWS = 5
RECENT_FAILURES = 3
THUMBNAIL_CACHE = 64
_PREVIEW_CHARS = 160


@dataclass(frozen=True)
class Recent:
    """One finished row as the live view keeps it (already reduced to display size)."""

    status: str
    prompt: str
    output: Any
    error: str
    latency_s: float
    cost_usd: float


class LiveView:
    """Collects finished rows and redraws a small HTML panel through `show` (a callable taking
    an object with ``_repr_html_``), at most once per `interval` seconds of `clock`."""

    def __init__(
        self,
        show: Callable[[Any], Any],
        *,
        total: int,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._show = show
        self.total = total
        self.interval = interval
        self._clock = clock
        self._last_draw = -math.inf
        self.recent: deque[Recent] = deque(maxlen=RECENT_ROWS)
        self.failures: deque[Recent] = deque(maxlen=RECENT_FAILURES)
        self.finished = 0
        self.draws = 0
        self._counts = ""
        # Thumbnails only; encoded ones are kept for the next redraws (the same rows stay on the
        # panel for several draws), up to THUMBNAIL_CACHE, then the cache starts afresh.
        self._renderer = MediaRenderer(max_text=_PREVIEW_CHARS, max_px=96)

    @classmethod
    def open(cls, *, total: int) -> LiveView:
        """A live view displayed in the current notebook cell (raises ImportError without IPython)."""
        from IPython.display import HTML, display

        handle = display(HTML(""), display_id=True)
        return cls(lambda obj: handle.update(obj), total=total)

    def add(self, row: Mapping[str, Any], inputs: Mapping[str, Any] | None, progress: Any) -> None:
        """Record one finished row; redraw if the last draw is older than `interval`."""
        item = _recent(row, inputs)
        self.recent.append(item)
        if item.status not in ("succeeded", "skipped_budget"):
            self.failures.append(item)
        self.finished += 1
        self._counts = f"{progress.postfix()}"
        now = self._clock()
        if now - self._last_draw >= self.interval or self.finished >= self.total:
            self._last_draw = now
            self.draw()

    def draw(self) -> None:
        """Render the panel now."""
        self.draws += 1
        self._show(_Html(self.html()))

    def html(self) -> str:
        """The panel: running counts and spend, the latest rows, the latest failures."""
        if len(self._renderer._uris) > THUMBNAIL_CACHE:
            self._renderer._uris.clear()  # bounded: memory stays flat over any number of rows
        renderer = self._renderer
        esc = html.escape
        rows = "".join(_row_html(item, renderer) for item in reversed(self.recent))
        failures = "".join(
            f'<li><span class="rb-error">{esc(item.status)}</span> {esc(item.prompt)}: '
            f'<span class="rb-error">{esc(item.error)}</span></li>'
            for item in reversed(self.failures)
        )
        failure_block = (
            f'<div class="rb-caption">latest failures</div><ul class="rb-live-failures">{failures}</ul>'
            if failures else ""
        )
        return (
            f"<style>{CSS}{_CSS}</style><div class=\"rb-root rb-live\">"
            f'<div class="rb-caption">{self.finished:,} of {self.total:,} finished · '
            f"{esc(self._counts)}</div>"
            f'<table class="rb-table rb-live-table"><tbody>{rows}</tbody></table>{failure_block}</div>'
        )

    def finish(self, summary: Any) -> None:
        """Replace the panel by the run's summary."""
        self._show(summary)

    def close(self) -> None:
        """Draw the last state (the run stopped early); the panel stays as it was."""
        if self.finished:
            self.draw()


class _Html:
    def __init__(self, text: str) -> None:
        self._text = text

    def _repr_html_(self) -> str:
        return self._text


def _recent(row: Mapping[str, Any], inputs: Mapping[str, Any] | None) -> Recent:
    prompt = ""
    if inputs:
        value = inputs.get("prompt", next(iter(inputs.values()), ""))
        prompt = " ".join(str(value).split())[:80]
    output = row.get("output")
    if isinstance(output, str) and not hasattr(output, "path"):
        output = output[:_PREVIEW_CHARS]
    elif isinstance(output, (list, tuple)):
        output = list(output[:4])  # at most four thumbnails per row
    error = row.get("error")
    return Recent(
        status=str(row.get("status", "")),
        prompt=prompt,
        output=output,
        error="" if is_missing(error) else str(error)[:200],
        latency_s=_number(row.get("latency_s")),
        cost_usd=_number(row.get("cost_usd")),
    )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _row_html(item: Recent, renderer: MediaRenderer) -> str:
    esc = html.escape
    status = item.status if item.status != "succeeded" else "ok"
    output = renderer.render(item.output) if item.status == "succeeded" else (
        f'<span class="rb-error">{esc(item.error)}</span>'
    )
    figures = []
    if math.isfinite(item.latency_s):
        figures.append(f"{item.latency_s:.3g} s")
    if math.isfinite(item.cost_usd):
        figures.append(format_usd(item.cost_usd))
    return (
        f'<tr><th scope="row">{esc(status)}</th><td class="rb-live-prompt">{esc(item.prompt)}</td>'
        f'<td>{output}</td><td class="rb-muted">{esc(" · ".join(figures))}</td></tr>'
    )


_CSS = """
.rb-live .rb-live-table td, .rb-live .rb-live-table th { padding: 2px 6px; min-width: 0; font-size: 12px; }
.rb-live .rb-live-table tbody th { min-width: 0; width: 4em; }
.rb-live .rb-live-table td .rb-text { display: -webkit-box; -webkit-line-clamp: 2;
  -webkit-box-orient: vertical; overflow: hidden; }
.rb-live .rb-live-table img.rb-media { max-height: 64px; width: auto; }
.rb-live .rb-live-prompt { max-width: 240px; }
.rb-live .rb-live-failures { margin: 0; padding-left: 18px; font-size: 12px; }
"""
