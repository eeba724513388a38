"""`score_vs_cost`: each group's mean score against its cost per row, with the Pareto front.

Exposed as ``rb.plot.score_vs_cost``. Axes-level and seaborn-shaped like the rest of `rb.plot`.
The front is `pareto_front`, a pure function: the groups no other group beats on both axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from replibatch._evaluate.leaderboard import Leaderboard, leaderboard
from replibatch._view.plotaxes import new_axes
from replibatch._view.plotlabels import short_label
from replibatch.errors import ConfigurationError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["pareto_front", "score_vs_cost"]


def pareto_front(board: pd.DataFrame, *, x: str = "cost_per_row", y: str = "score") -> list[Any]:
    """Index labels of `board` on the front: no other row has x <= and y >= with one strictly
    better. Rows with NaN in `x` or `y` are never on it. Ordered by increasing `x`."""
    known = board[[x, y]].dropna()
    front = []
    for label, row in known.iterrows():
        dominated = (
            (known[x] <= row[x]) & (known[y] >= row[y]) & ((known[x] < row[x]) | (known[y] > row[y]))
        ).any()
        if not dominated:
            front.append((row[x], -row[y], label))
    return [label for _, _, label in sorted(front, key=lambda item: (item[0], item[1]))]


def score_vs_cost(
    data: pd.DataFrame | Leaderboard,
    *,
    by: str | Sequence[str] = "model",
    score: str | None = None,
    ax: Axes | None = None,
    **leaderboard_options: Any,
) -> Axes:
    """Scatter of mean score (with its confidence interval) against cost per row, one point per
    group of `by`, the Pareto front drawn as a line and its points labelled in bold.

    `data`: a result frame (ranked with `leaderboard(data, by=by, score=score, ...)`) or a
    `Leaderboard`. Returns the Axes. Raises ConfigurationError (a ValueError) when no group has
    both a score and a cost, or for what `leaderboard` refuses.
    """
    board = (data if isinstance(data, Leaderboard)
             else leaderboard(data, by=by, score=score, **leaderboard_options))
    frame = board.frame
    known = frame.dropna(subset=["score", "cost_per_row"])
    if known.empty:
        raise ConfigurationError("no group has both a score and a cost to plot (score the frame first)")
    ax = new_axes(ax, (6.4, 4.4))
    front = pareto_front(known)
    middle = (known["cost_per_row"].min() + known["cost_per_row"].max()) / 2
    for label, row in known.iterrows():
        on_front = label in front
        low, high = row["score_low"], row["score_high"]
        yerr = None if math.isnan(low) else [[row["score"] - low], [high - row["score"]]]
        ax.errorbar([row["cost_per_row"]], [row["score"]], yerr=yerr, fmt="o",
                    markersize=8 if on_front else 6, capsize=3,
                    color="C0" if on_front else "0.55", zorder=3)
        text = " · ".join(map(str, label)) if isinstance(label, tuple) else str(label)
        # Labels point inwards, so the ones on the right stay inside the axes.
        right = len(known) > 1 and row["cost_per_row"] > middle
        ax.annotate(short_label(text, width=48), (row["cost_per_row"], row["score"]),
                    xytext=(-6 if right else 6, 6), textcoords="offset points", fontsize="small",
                    ha="right" if right else "left", fontweight="bold" if on_front else "normal")
    if len(front) > 1:
        points = known.loc[front]
        ax.plot(points["cost_per_row"], points["score"], "-", color="C0", alpha=0.6, zorder=2,
                label="Pareto front")
        ax.legend(loc="lower right", fontsize="small")
    ax.set_xlabel("cost per row (USD)")
    ax.set_ylabel(f"{board.score or 'score'} (mean, {board.confidence:.0%} CI)")
    ax.set_title(f"Score vs cost: {len(front)} of {len(known)} on the Pareto front")
    ax.grid(alpha=0.3)
    return ax
