"""Parameter sweeps: the cartesian product of a frame's rows with named axes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from replibatch.errors import ConfigurationError

__all__ = ["grid", "trained_grid"]

SAMPLE_COLUMN = "sample"
# What rb.train adds (`replibatch._table.training_plan.TRAINING_COLUMNS`): only the version and
# the training id are carried into a grid, the rest describes the training, not its outputs.
_TRAINING_RESULTS = ("status", "error", "queue_s", "predict_s", "latency_s", "cost_usd",
                     "cost_basis", "cached", "cache_key")


def _axis_values(name: str, value: Any) -> list[Any]:
    """One axis as a list: strings, bytes and mappings are single values, other iterables are axes."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        return [value]
    if isinstance(value, (set, frozenset)):
        # A set has no order of its own; sort it (when possible) so the grid is reproducible.
        try:
            values = sorted(value)
        except TypeError:
            values = list(value)
    else:
        values = list(value)
    if not values:
        raise ConfigurationError(f"grid axis {name!r} is empty")
    return values


def grid(df: pd.DataFrame | None = None, *, repeat: int = 1, **axes: Any) -> pd.DataFrame:
    """Return every row of `df` (one empty row when None) combined with every value of each axis.

    Rows are ordered with `df`'s rows outermost, then the axes in keyword order (the last axis
    varies fastest), then the sample index. `repeat=N` (N > 1) adds an int column ``sample``
    numbered 0..N-1 so repeated identical inputs are distinct cache entries. The result has a
    fresh RangeIndex; `df` is not modified.

    Raises ConfigurationError (a ValueError) when an axis is empty, an axis name is already a
    column of `df`, `repeat` is not an int >= 1, or ``sample`` is taken while `repeat` > 1.
    """
    if isinstance(repeat, bool) or not isinstance(repeat, (int, np.integer)) or repeat < 1:
        raise ConfigurationError(f"repeat must be an int >= 1, got {repeat!r}")
    base = pd.DataFrame(index=pd.RangeIndex(1)) if df is None else df.reset_index(drop=True)
    clashes = [name for name in axes if name in base.columns]
    if clashes:
        raise ConfigurationError(f"grid axis {clashes[0]!r} is already a column of the frame")
    if repeat > 1 and (SAMPLE_COLUMN in base.columns or SAMPLE_COLUMN in axes):
        raise ConfigurationError(
            f"repeat={repeat} adds a {SAMPLE_COLUMN!r} column, but the frame or an axis has one"
        )

    result = base
    for name, value in axes.items():
        result = _cross(result, pd.DataFrame({name: _column(_axis_values(name, value))}))
    if repeat > 1:
        result = _cross(result, pd.DataFrame({SAMPLE_COLUMN: np.arange(repeat, dtype="int64")}))
    return result.reset_index(drop=True)


def _column(values: list[Any]) -> pd.Series:
    """A column from axis values, keeping list/dict values whole (one cell each)."""
    if any(isinstance(v, (list, tuple, dict, set)) for v in values):
        column = pd.Series([None] * len(values), dtype=object)
        for position, value in enumerate(values):
            column.iat[position] = value
        return column
    return pd.Series(values)


def _cross(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """Cartesian product, `left` rows outermost, keeping both sides' dtypes."""
    outer = left.take(np.repeat(np.arange(len(left)), len(right))).reset_index(drop=True)
    inner = right.take(np.tile(np.arange(len(right)), len(left))).reset_index(drop=True)
    return pd.concat([outer, inner], axis=1)


def trained_grid(
    trained: pd.DataFrame, prompts: pd.DataFrame, *, model: str = "model", repeat: int = 1
) -> pd.DataFrame:
    """Every succeeded training of `trained` (an ``rb.train`` result) crossed with every row of
    `prompts`: the trained ``version`` becomes the `model` column, and the hyper-parameter
    columns and ``training_id`` come along, so ``rb.compare`` / ``rb.plot.heatmap`` /
    ``rb.leaderboard`` can rank hyper-parameters by what the trained models produce.

    Run it with ``rb.run(g, inputs=list(prompts.columns))``: the hyper-parameter columns are
    labels of the rows, not inputs of the trained models. Rows are ordered trainings outermost.
    Raises ConfigurationError when `trained` has no ``version`` column, no training
    succeeded, or `prompts` has a column the trainings frame has too.
    """
    if "version" not in trained.columns or "status" not in trained.columns:
        raise ConfigurationError("trained must be a frame rb.train returned (no 'version' column)")
    done = trained[trained["status"] == "succeeded"]
    if done.empty:
        raise ConfigurationError("no training succeeded: nothing to run prompts against")
    left = done.drop(columns=[c for c in _TRAINING_RESULTS if c in done.columns])
    left = left.rename(columns={"version": model}).reset_index(drop=True)
    clashes = [c for c in prompts.columns if c in left.columns]
    if clashes:
        raise ConfigurationError(f"prompts column {clashes[0]!r} is also a column of the trainings")
    result = _cross(left, prompts.reset_index(drop=True))
    if repeat > 1:
        result = grid(result, repeat=repeat)
    return result.reset_index(drop=True)
