"""Run summaries and pilot projections, computed from result frames (pure; no I/O).

- `summarize` / `format_summary`: the figures and the one line shown when a run ends.
- `project`: from a small pilot run, the cost and wall time a full run would take.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from replibatch.errors import ConfigurationError

__all__ = ["format_summary", "format_usd", "project", "summarize"]


def summarize(result: pd.DataFrame, wall_s: float) -> dict[str, Any]:
    """Figures of a finished run from its result frame and its wall time in seconds.

    Returns a dict: ``rows``; ``succeeded``; ``failed`` (rows with any other status) and
    ``by_status`` (those counted per status, e.g. ``{"failed": 2, "timeout": 1}``); ``cached``;
    ``cost_spent_usd`` (sum of known ``cost_usd`` of rows not from the cache);
    ``cost_saved_usd`` (the original cost of cached rows); ``cost_unknown`` (rows not from the
    cache whose cost is NaN — ``skipped_budget`` and ``error`` rows never ran and are not
    counted); ``wall_s``; ``rows_per_minute`` (NaN when `wall_s` is 0).

    Raises ConfigurationError when a ``status`` column is missing or `wall_s` is negative.
    """
    if "status" not in result.columns:
        raise ConfigurationError("result frame has no 'status' column")
    if wall_s is None or not math.isfinite(wall_s) or wall_s < 0:
        raise ConfigurationError(f"wall_s must be a finite number >= 0, got {wall_s!r}")
    status = result["status"].astype("object")
    cached = (
        result["cached"].fillna(False).astype(bool)
        if "cached" in result.columns
        else pd.Series(False, index=result.index)
    )
    cost = (
        pd.to_numeric(result["cost_usd"], errors="coerce")
        if "cost_usd" in result.columns
        else pd.Series(np.nan, index=result.index)
    )
    others = status[status != "succeeded"]
    by_status = {str(name): int(count) for name, count in others.value_counts(sort=False).items()}
    ran = ~status.isin(["skipped_budget", "error"])
    rows = len(result)
    return {
        "rows": rows,
        "succeeded": int((status == "succeeded").sum()),
        "failed": len(others),
        "by_status": dict(sorted(by_status.items(), key=lambda item: _status_order(item[0]))),
        "cached": int(cached.sum()),
        "cost_spent_usd": float(cost[~cached].sum()),
        "cost_saved_usd": float(cost[cached].sum()),
        "cost_unknown": int((cost[~cached & ran]).isna().sum()),
        "wall_s": float(wall_s),
        "rows_per_minute": rows / wall_s * 60.0 if wall_s > 0 else math.nan,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """One readable line from `summarize`'s dict, e.g. ``120 rows: 118 succeeded, 2 failed,
    40 cached · $0.0123 spent, $0.0040 saved by cache · 12.3 s · 585 rows/min``.

    Wall times under a second read in milliseconds and leave out the rate (``55 ms``)."""
    counts = [f"{summary['succeeded']} succeeded"]
    invalid = summary.get("invalid") or 0
    counts += [
        f"{count} {status}"
        + (f" ({invalid} invalid input, not sent)" if status == "error" and invalid else "")
        for status, count in summary.get("by_status", {}).items()
    ]
    if summary.get("cached"):
        counts.append(f"{summary['cached']} cached")
    if summary.get("shared"):
        counts.append(f"{summary['shared']} shared an identical row's prediction")
    money = f"{format_usd(summary['cost_spent_usd'])} spent"
    if summary.get("cost_saved_usd"):
        money += f", {format_usd(summary['cost_saved_usd'])} saved by cache"
    if summary.get("cost_unknown"):
        unknown = summary["cost_unknown"]
        money += f" (cost unknown for {unknown} row{'' if unknown == 1 else 's'})"
    rows = summary["rows"]
    head = f"{rows} row{'' if rows == 1 else 's'}: " + ", ".join(counts)
    parts = [head, money, _format_duration(summary["wall_s"])]
    rate = summary.get("rows_per_minute")
    # Under a second (e.g. everything from the cache) a rate says nothing about throughput.
    if rate is not None and math.isfinite(rate) and summary["wall_s"] >= 1:
        parts.append(f"{rate:.0f} rows/min" if rate >= 10 else f"{rate:.2g} rows/min")
    if summary.get("stopped"):
        parts.append(f"stopped: {summary['stopped']}")
    return " · ".join(parts)


def format_usd(amount: float, decimals: int | None = None) -> str:
    """Dollars for display, never in scientific notation: 4 decimals, or 2 significant digits
    below $0.001, 2 decimals from $100 (``$0.0123``, ``$0.00039``, ``$0.000077``,
    ``$0.0000068``, ``$123.46``); ``$?`` for NaN or None.

    `decimals` fixes the number of decimals instead (axis ticks, which must all read alike).
    The one USD formatter of replibatch: summaries, comparisons, plots, reports and budgets.
    """
    if amount is None:
        return "$?"
    amount = float(amount)
    if math.isnan(amount):
        return "$?"
    if math.isinf(amount):
        return "-$∞" if amount < 0 else "$∞"
    if amount == 0:
        return "$0"
    sign, amount = ("-", -amount) if amount < 0 else ("", amount)
    if decimals is not None:
        return f"{sign}${amount:,.{max(0, int(decimals))}f}"
    if amount >= 100:
        return f"{sign}${amount:,.2f}"
    if round(amount, 4) >= 0.001:
        return f"{sign}${amount:.4f}"
    return f"{sign}${amount:.{_decimals_for(amount)}f}"


def project(
    pilot: pd.DataFrame,
    rows_per_model: Mapping[str, int],
    *,
    concurrency: int,
    rate_per_minute: float,
    burst: float | None = None,
) -> pd.DataFrame:
    """Project cost and wall time of running `rows_per_model` rows from pilot result rows.

    `pilot` has columns ``model``, ``cost_usd`` and ``latency_s`` (rows of every status count:
    failed predictions bill too; NaN values are left out of the means). Per model, with n rows:

    - ``cost_usd`` = mean pilot cost × n; ``cost_low_usd`` / ``cost_high_usd`` = the cheapest /
      dearest pilot row × n (a few pilot rows give a range, not a confidence interval);
    - ``wall_s`` = max((n - burst) / rate, n × mean latency / concurrency) + one mean latency:
      the run is bound either by the create-request rate (after the limiter's first burst,
      by default a second's worth of creates, as the run's limiter allows) or by `concurrency`
      predictions in flight at once, and the last row still takes a full latency after it starts.

    The ``total`` row sums rows and costs (NaN if any model's cost is unknown) and applies the
    same wall-time model to all rows together (they share the limits), ending with the longest
    mean latency. A model with no usable pilot rows gets NaN figures.

    Returns a frame indexed by model plus ``total``, with columns ``rows``, ``pilot_rows``,
    ``cost_mean_usd``, ``cost_usd``, ``cost_low_usd``, ``cost_high_usd``, ``latency_mean_s``,
    ``wall_s``. Raises ConfigurationError when a column is missing, `concurrency` < 1,
    `rate_per_minute` <= 0 or a row count is negative.
    """
    missing = {"model", "cost_usd", "latency_s"} - set(pilot.columns)
    if missing:
        raise ConfigurationError(f"pilot frame lacks columns {sorted(missing)}")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if not rate_per_minute or not math.isfinite(rate_per_minute) or rate_per_minute <= 0:
        raise ConfigurationError(f"rate_per_minute must be > 0, got {rate_per_minute!r}")
    for model, rows in rows_per_model.items():
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0:
            raise ConfigurationError(f"rows for {model} must be an integer >= 0, got {rows!r}")
    seconds_per_create = 60.0 / rate_per_minute
    burst = max(1.0, rate_per_minute / 60.0) if burst is None else max(0.0, float(burst))

    records = []
    for model, rows in rows_per_model.items():
        mine = pilot[pilot["model"] == model]
        cost = pd.to_numeric(mine["cost_usd"], errors="coerce").dropna()
        latency = pd.to_numeric(mine["latency_s"], errors="coerce").dropna()
        mean_latency = latency.mean() if len(latency) else math.nan
        records.append(
            {
                "model": model,
                "rows": int(rows),
                "pilot_rows": len(mine),
                "cost_mean_usd": cost.mean() if len(cost) else math.nan,
                "cost_usd": cost.mean() * rows if len(cost) else math.nan,
                "cost_low_usd": cost.min() * rows if len(cost) else math.nan,
                "cost_high_usd": cost.max() * rows if len(cost) else math.nan,
                "latency_mean_s": mean_latency,
                "wall_s": _wall(
                    rows, rows * mean_latency, mean_latency, concurrency, seconds_per_create, burst
                ),
                "_busy_s": rows * mean_latency,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=[*_PROJECTION_COLUMNS, "_busy_s"])
    # Models with no rows to run add nothing, even when their pilot figures are unknown.
    to_run = frame[frame["rows"] > 0]
    total_rows = int(to_run["rows"].sum())
    frame.loc[len(frame)] = {
        "model": "total",
        "rows": total_rows,
        "pilot_rows": int(frame["pilot_rows"].sum()),
        "cost_mean_usd": math.nan,
        "cost_usd": to_run["cost_usd"].sum(skipna=False),
        "cost_low_usd": to_run["cost_low_usd"].sum(skipna=False),
        "cost_high_usd": to_run["cost_high_usd"].sum(skipna=False),
        "latency_mean_s": math.nan,
        "wall_s": _wall(
            total_rows,
            to_run["_busy_s"].sum(skipna=False),
            to_run["latency_mean_s"].max(skipna=False) if len(to_run) else 0.0,
            concurrency,
            seconds_per_create,
            burst,
        ),
        "_busy_s": math.nan,
    }
    frame = frame.drop(columns="_busy_s").set_index("model")
    frame["rows"] = frame["rows"].astype(int)
    frame["pilot_rows"] = frame["pilot_rows"].astype(int)
    return frame


_PROJECTION_COLUMNS = [
    "model",
    "rows",
    "pilot_rows",
    "cost_mean_usd",
    "cost_usd",
    "cost_low_usd",
    "cost_high_usd",
    "latency_mean_s",
    "wall_s",
]

_STATUS_ORDER = ["failed", "canceled", "timeout", "error", "skipped_budget"]


def _status_order(status: str) -> tuple[int, str]:
    return (_STATUS_ORDER.index(status) if status in _STATUS_ORDER else len(_STATUS_ORDER), status)


def _wall(
    rows: int,
    busy_s: float,
    tail_latency_s: float,
    concurrency: int,
    seconds_per_create: float,
    burst: float,
) -> float:
    if rows == 0:
        return 0.0
    paced = max(0.0, rows - burst) * seconds_per_create
    return max(paced, busy_s / concurrency) + tail_latency_s


def _decimals_for(amount: float) -> int:
    return max(2, 1 - math.floor(math.log10(abs(float(amount)))))


def _format_duration(seconds: float) -> str:
    if seconds < 0.001:
        return "0 s" if seconds == 0 else "<1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(float(seconds)), 60)  # float(): numpy 1.x rounds to a float64
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
