"""`RunSummary`: the figures of a finished run, as `res.attrs["replibatch"]` holds them.

It is a ``dict`` subclass on purpose: code reads it like the dict it used to be
(``res.attrs["replibatch"]["succeeded"]``, ``json.dumps(...)``, ``dict(...)``), pandas deep-copies
attrs when it copies a frame (a dict subclass survives that with its class), and Parquet round
trips give the plain dict back. On top of that it has typed read-only properties, shows itself
as a small table in a notebook (`_repr_html_`) and as the one summary line in a terminal
(`__str__` / `__repr__`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from replibatch._table.summary import format_summary, format_usd
from replibatch._view.theme import PALETTE_CSS

__all__ = ["RunSummary", "bar_state"]

# Share of finished rows that failed from which the bar shows "danger" instead of "warning".
DANGER_SHARE = 0.10


class RunSummary(dict):
    """The run summary dict (keys as `replibatch._table.summary.summarize` documents them)."""

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> RunSummary:
        """Wrap a summary mapping (returned as is when it is already a RunSummary)."""
        return summary if isinstance(summary, RunSummary) else cls(summary)

    @property
    def rows(self) -> int:
        return int(self.get("rows", 0))

    @property
    def succeeded(self) -> int:
        return int(self.get("succeeded", 0))

    @property
    def failed(self) -> int:
        """Rows with any status but ``succeeded`` (``skipped_budget`` included)."""
        return int(self.get("failed", 0))

    @property
    def by_status(self) -> dict[str, int]:
        return dict(self.get("by_status", {}))

    @property
    def cached(self) -> int:
        return int(self.get("cached", 0))

    @property
    def cost_spent_usd(self) -> float:
        return float(self.get("cost_spent_usd", math.nan))

    @property
    def wall_s(self) -> float:
        return float(self.get("wall_s", math.nan))

    @property
    def state(self) -> str:
        """``success``, ``warning`` or ``danger``: how the run went (see `bar_state`)."""
        skipped = self.by_status.get("skipped_budget", 0)
        return bar_state(self.succeeded + self.failed, self.failed - skipped, skipped)

    def __str__(self) -> str:
        return format_summary(self)

    def __repr__(self) -> str:
        return f"RunSummary({format_summary(self)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        esc = html.escape
        cells = [("rows", f"{self.rows:,}"), ("succeeded", f"{self.succeeded:,}")]
        cells += [(status, f"{count:,}") for status, count in self.by_status.items()]
        if self.cached:
            cells.append(("cached", f"{self.cached:,}"))
        cells.append(("spent", format_usd(self.cost_spent_usd)))
        saved = float(self.get("cost_saved_usd", 0.0) or 0.0)
        if saved:
            cells.append(("saved by cache", format_usd(saved)))
        unknown = int(self.get("cost_unknown", 0) or 0)
        if unknown:
            cells.append(("cost unknown", f"{unknown:,} rows"))
        line = format_summary(self).split(" · ")
        cells.append(("wall time", line[2] if len(line) > 2 else "—"))
        if len(line) > 3:
            cells.append(("throughput", line[3]))
        head = "".join(f'<th scope="col">{esc(name)}</th>' for name, _ in cells)
        body = "".join(f"<td>{esc(value)}</td>" for _, value in cells)
        return (
            f"<style>{PALETTE_CSS}{_CSS}</style>"
            f'<div class="rb-root rb-summary-box rb-state-{self.state}">'
            f'<table class="rb-summary-table"><thead><tr>{head}</tr></thead>'
            f"<tbody><tr>{body}</tr></tbody></table></div>"
        )


def bar_state(finished: int, failed: int, skipped: int) -> str:
    """``danger`` when at least 10 % of `finished` rows failed (any status but succeeded and
    skipped_budget), ``warning`` when any row failed or was skipped for the budget, else
    ``success``."""
    if failed and finished and failed / finished >= DANGER_SHARE:
        return "danger"
    if failed or skipped:
        return "warning"
    return "success"


_CSS = """
.rb-summary-box { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 13px;
  border-left: 4px solid #2da44e; padding-left: 6px; margin: 4px 0; }
.rb-summary-box.rb-state-warning { border-left-color: #d4a72c; }
.rb-summary-box.rb-state-danger { border-left-color: #cf222e; }
.rb-summary-table { border-collapse: collapse; color: inherit; }
.rb-summary-table th, .rb-summary-table td { padding: 2px 10px 2px 0; text-align: left;
  border: 0; color: inherit; background: transparent; white-space: nowrap; }
.rb-summary-table th { color: var(--rb-muted); font-weight: 400; font-size: 11px; }
"""
