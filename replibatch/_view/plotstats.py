"""The statistics behind each plot of `rb.plot`, apart from the drawing (pure: pandas and numpy,
no matplotlib).

Each function takes the result frame and the plot's column names and returns what the plot
draws: `latency_groups` (the boxes), `cost_summary` (the bars), `heatmap_table` (the cells),
`timeline_spans` and `peak_in_flight` (the bars of the run's timeline). Missing columns raise
ConfigurationError here, so a plot fails before it opens a figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from replibatch.errors import ConfigurationError

__all__ = [
    "cost_summary",
    "first_seen",
    "heatmap_table",
    "is_nan",
    "latency_groups",
    "numeric",
    "peak_in_flight",
    "require_columns",
    "timeline_spans",
]


def require_columns(data: pd.DataFrame, *columns: str | None) -> None:
    """Raises ConfigurationError when `data` is not a DataFrame or lacks one of `columns`
    (None entries are skipped: an optional column not asked for)."""
    if not isinstance(data, pd.DataFrame):
        raise ConfigurationError(f"expected a DataFrame, got {type(data).__name__}")
    for name in columns:
        if name is not None and name not in data.columns:
            raise ConfigurationError(f"column {name!r} is not in the frame")


def numeric(series: pd.Series) -> pd.Series:
    """`series` as floats; text and None become NaN."""
    return pd.to_numeric(series, errors="coerce").astype(float)


def first_seen(values: pd.Series) -> list[Any]:
    """Distinct values in order of first appearance (the order the user built the frame in)."""
    return list(dict.fromkeys(v for v in values.tolist() if not is_nan(v)))


def is_nan(value: Any) -> bool:
    """True for None and float NaN."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def latency_groups(
    data: pd.DataFrame, *, x: str = "model", y: str = "latency_s", hue: str | None = None
) -> dict[tuple[Any, Any], np.ndarray]:
    """Finite `y` values per (`x` value, `hue` value or None), in order of first appearance.

    Raises ConfigurationError when a column is missing.
    """
    require_columns(data, x, y, hue)
    values = numeric(data[y])
    keep = np.isfinite(values)
    frame = data.loc[keep]
    groups: dict[tuple[Any, Any], np.ndarray] = {}
    hue_values = frame[hue] if hue is not None else pd.Series([None] * len(frame), index=frame.index)
    for category in first_seen(frame[x]):
        for level in first_seen(hue_values) if hue is not None else [None]:
            mask = frame[x] == category
            if hue is not None:
                mask &= hue_values == level
            if mask.any():
                groups[(category, level)] = values[keep][mask].to_numpy()
    return groups


def cost_summary(data: pd.DataFrame, *, x: str = "model", y: str = "cost_usd") -> pd.DataFrame:
    """Per `x` value: ``n`` known costs, ``n_unknown`` NaN costs, ``mean``, ``sd``, ``total``.

    Ordered by first appearance. Raises ConfigurationError when a column is missing.
    """
    require_columns(data, x, y)
    values = numeric(data[y])
    rows = []
    for category in first_seen(data[x]):
        sample = values[data[x] == category]
        known = sample[np.isfinite(sample)]
        rows.append(
            {
                x: category,
                "n": len(known),
                "n_unknown": len(sample) - len(known),
                "mean": known.mean() if len(known) else np.nan,
                "sd": known.std(ddof=1) if len(known) > 1 else np.nan,
                "total": known.sum() if len(known) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=[x, "n", "n_unknown", "mean", "sd", "total"])


def heatmap_table(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    value: str = "latency_s",
    agg: str | Callable[[pd.Series], float] = "mean",
) -> pd.DataFrame:
    """`value` aggregated over every (`y`, `x`) pair: rows are `y` values, columns `x` values,
    both sorted; NaN where no row has a known value.

    Raises ConfigurationError when a column is missing.
    """
    require_columns(data, x, y, value)
    frame = pd.DataFrame({"x": data[x], "y": data[y], "v": numeric(data[value])})
    table = frame.groupby(["y", "x"], dropna=True)["v"].agg(agg).unstack("x")
    table.index.name, table.columns.name = y, x
    return table.astype(float)


def timeline_spans(data: pd.DataFrame) -> pd.DataFrame:
    """One row per prediction run in this run, ordered by submit time, with seconds since the
    first submit: ``start``, ``queue``, ``predict``, ``other`` (the rest of the client's wall time:
    upload, network, polling, download), ``end``; plus ``row`` (the original index) and ``status``.

    Needs ``submitted_at`` and ``completed_at``; uses ``queue_s``, ``predict_s``, ``cached`` and
    ``status`` when present. Raises ConfigurationError when a needed column is missing.
    """
    require_columns(data, "submitted_at", "completed_at")
    submitted, completed = numeric(data["submitted_at"]), numeric(data["completed_at"])
    keep = np.isfinite(submitted) & np.isfinite(completed)
    if "cached" in data.columns:
        keep &= ~data["cached"].fillna(False).astype(bool)
    columns = ["row", "start", "queue", "predict", "other", "end", "status"]
    if not keep.any():
        return pd.DataFrame(columns=columns)

    def optional(name: str) -> np.ndarray:
        if name not in data.columns:
            return np.zeros(int(keep.sum()))
        return np.nan_to_num(numeric(data[name])[keep].to_numpy(), nan=0.0).clip(min=0)

    start = submitted[keep].to_numpy()
    total = (completed[keep].to_numpy() - start).clip(min=0)
    # Server-side spans cannot exceed what the client saw; clip so the bar stays one length.
    queue = np.minimum(optional("queue_s"), total)
    predict = np.minimum(optional("predict_s"), total - queue)
    status = data["status"][keep] if "status" in data.columns else "succeeded"
    spans = pd.DataFrame(
        {
            "row": data.index[keep],
            "start": start - start.min(),
            "queue": queue,
            "predict": predict,
            "other": total - queue - predict,
            "end": start - start.min() + total,
            "status": np.asarray(status) if not isinstance(status, str) else status,
        },
        columns=columns,
    )
    return spans.sort_values("start", kind="stable").reset_index(drop=True)


def peak_in_flight(spans: pd.DataFrame) -> int:
    """The most predictions in flight at once (a prediction ending as another starts counts once)."""
    if spans.empty:
        return 0
    events = sorted([(t, 1) for t in spans["start"]] + [(t, -1) for t in spans["end"]],
                    key=lambda event: (event[0], event[1]))  # ends before starts at equal times
    level = peak = 0
    for _, change in events:
        level += change
        peak = max(peak, level)
    return peak
