"""Decisions the plots share, kept apart from drawing (pure; matplotlib only for colour maps).

- `palette`: one colour per value of a column (models, usually), the same in every plot of a
  frame: it depends only on the column's distinct values in order of first appearance over the
  whole frame, never on which rows a plot keeps.
- `wants_log` / `padded_limits`: when an axis needs a log scale, and limits that keep every point
  (and its marker) inside the axes.
- `submit_rates`: the sustained create rate a run achieved, not its first burst extrapolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SubmitRates", "padded_limits", "palette", "submit_rates", "wants_log"]

# Positive values spanning more than this ratio (two decades) get a log axis by default.
LOG_SPAN = 100.0
# Share of the data range added on each side, beyond the markers' own size.
MARGIN = 0.06


def palette(data: pd.DataFrame, column: str | None) -> dict[Any, Any]:
    """``{value: RGBA}`` for every distinct non-missing value of `column` in `data` (tab10, or
    tab20 past ten values), in order of first appearance; {} when `column` is None or absent."""
    if column is None or column not in data.columns:
        return {}
    import matplotlib

    values = list(dict.fromkeys(v for v in data[column].tolist() if not _missing(v)))
    cmap = matplotlib.colormaps["tab10" if len(values) <= 10 else "tab20"]
    return {value: cmap(i % cmap.N) for i, value in enumerate(values)}


def wants_log(values: Any, logy: bool | None) -> bool:
    """`logy` when given; otherwise True when every finite value is > 0 and they span more than
    two decades (a linear axis would flatten the cheap ones onto zero)."""
    if logy is not None:
        return bool(logy)
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) < 2 or (finite <= 0).any():
        return False
    return bool(finite.max() / finite.min() > LOG_SPAN)


def padded_limits(values: Any, *, log: bool = False, floor_zero: bool = True) -> tuple[float, float]:
    """Axis limits holding every finite value with room for its marker on both sides.

    Linear: from 0 (when `floor_zero`, and the smallest value is far enough above 0 for its
    marker) or else the minimum less a margin, to the maximum plus a margin; all-equal values
    get a range around them. Log:
    a factor beyond the extremes (non-positive values are left out; they cannot be drawn).
    Returns (0, 1) when there is no finite value.
    """
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if log:
        array = array[array > 0]
        if not len(array):
            return (0.1, 10.0)
        low, high = float(array.min()), float(array.max())
        span = math.log10(high / low) if high > low else 1.0
        factor = 10 ** max(0.08, MARGIN * span)
        return (low / factor, high * factor)
    if not len(array):
        return (0.0, 1.0)
    low, high = float(array.min()), float(array.max())
    span = high - low or abs(high) or 1.0
    pad = MARGIN * span * 1.5
    top = high + pad
    if floor_zero and low >= 0 and low - pad >= 0:
        return (0.0, top)  # the axis starts at zero when that cuts no marker
    return (low - pad, top)


@dataclass(frozen=True)
class SubmitRates:
    """Creates per minute a run achieved: over the whole run and after its first burst."""

    overall_per_minute: float
    sustained_per_minute: float


def submit_rates(starts: Any) -> SubmitRates | None:
    """From submit times in seconds (any order), the overall rate and the sustained rate: over
    the later half of the submits, so a first burst (a token bucket's stored tokens) is not
    extrapolated. None with fewer than 4 submits or no time between them."""
    times = np.sort(np.asarray(starts, dtype=float))
    times = times[np.isfinite(times)]
    if len(times) < 4 or times[-1] <= times[0]:
        return None
    overall = 60.0 * (len(times) - 1) / (times[-1] - times[0])
    half = times[len(times) // 2 :]
    if half[-1] <= half[0]:
        return SubmitRates(overall, overall)
    sustained = 60.0 * (len(half) - 1) / (half[-1] - half[0])
    return SubmitRates(overall, sustained)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
