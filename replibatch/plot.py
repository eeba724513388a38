"""Plots of a result frame: matplotlib, axes-level, seaborn-shaped.

Every plot takes the frame first, column names as keywords and ``ax=`` (a new figure when None),
and returns the Axes. The aggregation behind each plot is a pure function here too
(`latency_groups`, `cost_summary`, `heatmap_table`, `timeline_spans`, `peak_in_flight`), so it
can be tested and reused without drawing.

Which rows are drawn:
- timing and cost plots use every row whose value is known, cached rows included: a cached row
  keeps the timing and cost of the prediction that produced it. Rows with an unknown (NaN)
  value are left out and counted in the title.
- `timeline` shows only the predictions run in this run (cached rows and rows never submitted,
  e.g. ``skipped_budget``, are left out and counted), because only they have a place in time.
  It needs ``submitted_at`` and ``completed_at`` (client epoch seconds); ``queue_s`` and
  ``predict_s`` split each bar, ``status`` marks the rows that did not succeed.

matplotlib is imported only when something is drawn.

This module is the public face only: the statistics live in `replibatch._view.plotstats`, the
drawing in `replibatch._view.plots` (and `plot_eval` for `score_vs_cost`).
"""

from replibatch._view.plot_eval import score_vs_cost
from replibatch._view.plots import cost, cost_vs_latency, heatmap, latency, timeline
from replibatch._view.plotstats import (
    cost_summary,
    heatmap_table,
    latency_groups,
    peak_in_flight,
    timeline_spans,
)

__all__ = [
    "cost",
    "cost_summary",
    "cost_vs_latency",
    "heatmap",
    "heatmap_table",
    "latency",
    "latency_groups",
    "peak_in_flight",
    "score_vs_cost",
    "timeline",
    "timeline_spans",
]
