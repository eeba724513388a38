"""`score`: Python scorers over a result frame, one ``score_<name>`` column each.

A scorer is a callable of the row (a `Row`: every column of the result frame by name, as
``row["output"]`` or ``row.output``, with ``row.name`` its index label) or, when its one
parameter is named ``output``, of the row's output alone. It returns a number
or a bool (True is 1.0). `replibatch.scorers` makes the common ones.

Rows that did not succeed get NaN. A scorer that raises on a row (or returns something that is
not a number) gives NaN for that row and the reason in ``score_<name>_error``; it never stops the
other rows or the other scorers. The error column is added only for scorers that failed somewhere.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from replibatch._table.frame import one_line
from replibatch.errors import ConfigurationError

__all__ = ["SCORE_PREFIX", "Row", "Scorer", "evaluation_columns", "score", "score_columns"]

SCORE_PREFIX = "score_"

Scorer = Callable[[Any], Any]


class Row(dict[str, Any]):
    """One row of a result frame: column -> value, read as ``row["output"]``, ``row.output`` or
    ``row.get("expected")``; ``row.name`` is its index label, ``row.to_series()`` a pandas Series.

    A plain dict underneath: building a pandas Series per row would make scoring 100,000 rows
    take tens of seconds (bench/evaluate.py). A missing attribute raises AttributeError, a
    missing key KeyError.
    """

    name: Any = None

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"the row has no column {key!r}") from None

    def to_series(self) -> pd.Series:
        """The row as a pandas Series (object dtype), named by its index label."""
        return pd.Series(dict(self), name=self.name, dtype=object)


def _rows(res: pd.DataFrame, positions: np.ndarray) -> dict[int, Row]:
    columns = list(res.columns)
    values = [res[c].tolist() if not isinstance(res[c], pd.DataFrame) else [None] * len(res)
              for c in columns]
    labels = res.index.tolist()
    rows = {}
    for i in positions:
        row = Row(zip(columns, (column[i] for column in values), strict=True))
        row.name = labels[i]
        rows[int(i)] = row
    return rows


@dataclass(frozen=True)
class _Prepared:
    name: str
    call: Scorer
    takes_output: bool


def _takes_output(scorer: Scorer) -> bool:
    """True when `scorer`'s only required parameter is named ``output``."""
    if getattr(scorer, "takes_output", False):
        return True
    try:
        parameters = list(inspect.signature(scorer).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature get the row
        return False
    required = [p for p in parameters if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 1 and required[0].name == "output"


def as_number(value: Any) -> float:
    """`value` (a number, bool or numpy scalar) as a float.

    Raises TypeError for anything else (text, None, lists), naming its type.
    """
    if isinstance(value, (bool, np.bool_)):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise TypeError(f"the scorer returned {type(value).__name__} {value!r:.60}, not a number or bool")


def score_columns(frame: pd.DataFrame) -> list[str]:
    """The ``score_<name>`` columns of `frame` (not their ``_error`` companions), in order."""
    return [
        str(c) for c in frame.columns
        if isinstance(c, str) and c.startswith(SCORE_PREFIX) and not c.endswith("_error")
    ]


# What judge() adds beside score_<name>: <name>_reason, <name>_status...
_JUDGE_SUFFIXES = ("_reason", "_status", "_error", "_cost_usd", "_latency_s", "_cached")


def evaluation_columns(columns: Sequence[Any]) -> list[str]:
    """The columns `score`, `judge` and ratings added: ``score_*`` (and their ``_error``),
    ``rating_*``, and ``<name>_reason``/``_status``/``_error``/``_cost_usd``/``_latency_s``/
    ``_cached`` beside a ``score_<name>``. They are results, never parameters."""
    names = {c for c in columns if isinstance(c, str)}
    found = []
    for column in columns:
        if not isinstance(column, str):
            continue
        if column.startswith((SCORE_PREFIX, "rating_")):
            found.append(column)
            continue
        for suffix in _JUDGE_SUFFIXES:
            if column.endswith(suffix) and f"{SCORE_PREFIX}{column[: -len(suffix)]}" in names:
                found.append(column)
                break
    return found


def score(res: pd.DataFrame, /, **scorers: Scorer) -> pd.DataFrame:
    """A copy of `res` with a ``score_<name>`` column (float64) for each keyword scorer.

    ``rb.score(res, has_cat=rb.scorers.contains("cat"), words=lambda output: len(output.split()))``
    (the row passed to a scorer is a `Row`, a dict of the row's columns with attribute access)

    Rows whose ``status`` is not ``succeeded`` get NaN (a frame without ``status`` is scored
    everywhere). A scorer raising on a row gives NaN there and its one-line reason in
    ``score_<name>_error`` (added only when some row failed). Existing columns of the same name
    are replaced.

    Raises ConfigurationError (a ValueError) when `res` is not a DataFrame, no scorer is given,
    or a scorer is not callable.
    """
    if not isinstance(res, pd.DataFrame):
        raise ConfigurationError(f"score() needs a DataFrame, got {type(res).__name__}")
    if not scorers:
        raise ConfigurationError("score() needs at least one scorer: score(res, name=callable)")
    prepared = []
    for name, scorer in scorers.items():
        if not callable(scorer):
            raise ConfigurationError(f"scorer {name!r} is a {type(scorer).__name__}, not a callable")
        prepared.append(_Prepared(name, scorer, _takes_output(scorer)))

    if "status" in res.columns:
        ok = (res["status"] == "succeeded").to_numpy(dtype=bool, na_value=False)
    else:
        ok = np.ones(len(res), dtype=bool)
    outputs = res["output"].tolist() if "output" in res.columns else [None] * len(res)
    rows = _rows(res, np.flatnonzero(ok)) if any(not p.takes_output for p in prepared) else {}

    out = res.copy()
    for p in prepared:
        values = np.full(len(res), np.nan)
        errors: list[str | None] = [None] * len(res)
        for i in map(int, np.flatnonzero(ok)):
            try:
                number = as_number(p.call(outputs[i] if p.takes_output else rows[i]))
            except Exception as exc:  # noqa: BLE001 - a scorer's failure is that row's result
                errors[i] = one_line(f"{type(exc).__name__}: {exc}")
                continue
            values[i] = number if not math.isnan(number) else np.nan
        column = f"{SCORE_PREFIX}{p.name}"
        out[column] = values
        error_column = f"{column}_error"
        if any(e is not None for e in errors):
            out[error_column] = pd.Series(errors, index=res.index, dtype=object)
        elif error_column in out.columns:
            out = out.drop(columns=error_column)
    return out
