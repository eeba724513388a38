"""``replibatch.estimate``: run a few pilot rows per model, then project the whole frame."""

from __future__ import annotations

from typing import Any

import pandas as pd

from replibatch._engine.limiter import DEFAULT_CREATE_RATE
from replibatch._engine.runner import DEFAULT_CONCURRENCY, run
from replibatch._table import frame as frames
from replibatch._table.summary import project
from replibatch.errors import ConfigurationError

__all__ = ["estimate"]


def estimate(
    df: pd.DataFrame,
    model: str | None = None,
    inputs: Any = None,
    *,
    pilot: int = 3,
    **options: Any,
) -> pd.DataFrame:
    """Run ``pilot`` rows of each model, then project cost and wall time of the whole ``df``.

    The pilot rows are spread evenly over each model's rows (first and last included).

    The pilot rows go through ``replibatch.run`` with the same options (and cache), so the real
    run reuses them. Returns a frame indexed by model plus ``total`` with ``rows``, ``cost_usd``
    (and a low/high range from the pilot spread), ``latency_mean_s`` and ``wall_s`` under the
    run's concurrency and create rate; the pilot result frame is in ``.attrs["pilot"]``.

    Raises ConfigurationError (a ValueError) for an invalid call, like ``run``.
    """
    if isinstance(pilot, bool) or not isinstance(pilot, int) or pilot < 1:
        raise ConfigurationError(f"pilot must be a whole number >= 1, got {pilot!r}")
    plan = frames.plan_jobs(df, model=model, inputs=inputs)
    per_model: dict[str, list[int]] = {}
    for job in plan.jobs:
        per_model.setdefault(job.model, []).append(job.position)
    # Spread the pilot over each model's rows: the first rows of an ordered grid are one corner
    # of the sweep (the cheapest, often), which would bias the projection.
    chosen = sorted(p for positions in per_model.values() for p in _spread(positions, pilot))
    pilot_frame = df.iloc[chosen]
    result = run(pilot_frame, model, inputs, **options)
    summary = result.attrs.get("replibatch", {})
    pilot_rows = pd.DataFrame(
        {
            "model": [plan.jobs[p].model for p in chosen],
            "cost_usd": result["cost_usd"].to_numpy(),
            "latency_s": result["latency_s"].to_numpy(),
        }
    )
    projection = project(
        pilot_rows,
        {name: len(positions) for name, positions in per_model.items()},
        concurrency=options.get("concurrency") or DEFAULT_CONCURRENCY,
        rate_per_minute=options.get("rate_limit")
        or summary.get("create_rate_per_minute")
        or DEFAULT_CREATE_RATE,
    )
    projection.attrs["pilot"] = result
    return projection


def _spread(positions: list[int], count: int) -> list[int]:
    """``count`` evenly spaced items of ``positions`` (all of them when there are fewer)."""
    if len(positions) <= count:
        return positions
    if count == 1:
        return [positions[0]]
    step = (len(positions) - 1) / (count - 1)
    return [positions[round(i * step)] for i in range(count)]
