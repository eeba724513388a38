"""Assembling results into columns: one outcome into result-column values, rows into a frame.

Pure: nothing here sends, sleeps or reads the clock. `prediction_row` / `error_row` turn one
outcome into result-column values; `assemble` builds the returned frame from a `Plan`.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from replibatch._table.columns import (
    FLOAT_COLUMNS,
    INT_TOKEN_COLUMNS,
    MAX_ERROR_CHARS,
    MODEL_COLUMN,
    RESULT_COLUMNS,
    TOKEN_COLUMNS,
)
from replibatch._table.inputs import is_uri
from replibatch._table.plan import Plan

__all__ = ["assemble", "error_row", "one_line", "parse_timestamp", "prediction_row"]


def prediction_row(record: Mapping[str, Any], *, latency_s: float | None = None) -> dict[str, Any]:
    """Result-column values for a prediction record as Replicate returns it.

    ``aborted`` becomes ``canceled`` (said in `error`); ``starting``/``processing`` are passed
    through with an error saying the prediction had not finished; an unknown or missing status
    becomes ``error``. Token columns are included only when the record's metrics report them.
    Cost columns are left None for the caller to fill; `cached` is False.
    """
    status = record.get("status")
    reported = record.get("error")
    reported = one_line(reported) if reported not in (None, "") else None
    if status == "succeeded":
        error = None
    elif status == "failed":
        error = reported or "the prediction failed without an error message"
    elif status == "canceled":
        error = reported or "the prediction was canceled"
    elif status == "aborted":
        status = "canceled"
        error = "aborted: terminated before it started running" + (f": {reported}" if reported else "")
    elif status in ("starting", "processing"):
        error = reported or f"the prediction had not finished (status {status!r})"
    else:
        error = f"unexpected prediction status {status!r}" + (f": {reported}" if reported else "")
        status = "error"

    metrics = record.get("metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    created = parse_timestamp(record.get("created_at"))
    started = parse_timestamp(record.get("started_at"))
    # The service stamps created_at and started_at on different machines: a few ms of skew can
    # put start before creation, which means "no queueing", not negative time.
    queue_s = max(0.0, started - created) if created is not None and started is not None else None

    row = _blank_row()
    row.update(
        output=_normalize_output(record.get("output")),
        status=status,
        error=error,
        prediction_id=record.get("id"),
        version=record.get("version"),
        queue_s=queue_s,
        predict_s=_number_or_none(metrics.get("predict_time")),
        latency_s=_number_or_none(latency_s),
    )
    for column in TOKEN_COLUMNS:
        value = _number_or_none(metrics.get(column))
        if value is not None:
            row[column] = int(value) if column in INT_TOKEN_COLUMNS else value
    return row


def error_row(
    status: str,
    error: str,
    *,
    prediction_id: str | None = None,
    latency_s: float | None = None,
) -> dict[str, Any]:
    """Result-column values for a row with no usable prediction (``error``, ``timeout``,
    ``skipped_budget``...); `error` is collapsed to one line and truncated.

    Raises ValueError when `status` is ``succeeded`` (a success needs its prediction record).
    """
    if status == "succeeded":
        raise ValueError("error_row is for rows that did not succeed; use prediction_row")
    row = _blank_row()
    row.update(
        status=status,
        error=one_line(error),
        prediction_id=prediction_id,
        latency_s=_number_or_none(latency_s),
    )
    return row


def assemble(df: pd.DataFrame, plan: Plan, rows: Sequence[Mapping[str, Any] | None]) -> pd.DataFrame:
    """A new frame: `df`'s index and columns, then ``model`` (when it came from the argument),
    the result columns and the token columns some row reported. `rows[i]` is the result of
    ``plan.jobs[i]``; a None row (never run) gives empty values.

    Result columns already in `df` are overwritten in place. Timings and cost are float64,
    token counts Int64, `cached` bool, the rest object. Raises ValueError when the number of
    rows does not match the frame.
    """
    if len(rows) != len(df) or len(plan.jobs) != len(df):
        raise ValueError(
            f"{len(rows)} result rows and {len(plan.jobs)} jobs for a frame of {len(df)} rows"
        )
    present: set[str] = set()
    for row in rows:
        if row:
            present.update(column for column in TOKEN_COLUMNS if row.get(column) is not None)
    columns = list(RESULT_COLUMNS) + [column for column in TOKEN_COLUMNS if column in present]

    new: dict[str, Any] = {}
    if plan.model_from_argument:
        new[MODEL_COLUMN] = _object_array([job.model for job in plan.jobs])
    for column, values in zip(columns, _transpose(rows, columns), strict=True):
        if column in FLOAT_COLUMNS or column in ("time_to_first_token", "tokens_per_second"):
            new[column] = np.array(
                [np.nan if value is None else value for value in values], dtype="float64"
            )
        elif column in INT_TOKEN_COLUMNS:
            new[column] = pd.array(values, dtype="Int64")
        elif column == "cached":
            new[column] = np.array([bool(value) for value in values], dtype=bool)
        else:
            new[column] = _object_array(values)

    # Explicit dtypes: pandas 3 would otherwise infer "str" for all-text object columns, and
    # `output` must stay object (lists, dicts and text mix there).
    series = {
        column: pd.Series(values, index=df.index, dtype=values.dtype, copy=False)
        for column, values in new.items()
    }
    appended = {column: s for column, s in series.items() if column not in df.columns}
    result = df.copy()
    for column, values in series.items():
        if column not in appended:
            result[column] = values.to_numpy()
    if appended:
        result = pd.concat([result, pd.DataFrame(appended)], axis=1)
    return result


def _transpose(rows: Sequence[Mapping[str, Any] | None], columns: list[str]) -> list[list[Any]]:
    """Column lists of `rows` (missing keys and None rows give None); `columns` has two or more."""
    take = operator.itemgetter(*columns)
    try:
        # One C-level lookup of every column per row: the common case, where every row has them.
        table = [take(row) for row in rows]  # type: ignore[arg-type]  # a None row: TypeError, below
    except (KeyError, TypeError):
        empty = (None,) * len(columns)
        table = [tuple(row.get(c) for c in columns) if row else empty for row in rows]
    return [list(values) for values in zip(*table, strict=True)] if table else [[] for _ in columns]


def one_line(text: Any, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` as one line of at most `limit` characters.

    A Python traceback is reduced to its last line (the exception), which says what went wrong.
    """
    text = str(text)
    if "Traceback (most recent call last)" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1] if lines else text
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_TIMESTAMP_RE = re.compile(
    r"^\s*(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?\s*"
    r"(Z|z|[+-]\d\d(?::?\d\d)?)?\s*$"
)


def parse_timestamp(text: Any) -> float | None:
    """Seconds since the epoch for an ISO-8601 timestamp (Z or offset, any fractional digits;
    naive means UTC), or None when `text` is missing or not a timestamp."""
    if not isinstance(text, str):
        return None
    match = _TIMESTAMP_RE.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            tzinfo=timezone.utc,
        )
    except ValueError:
        return None
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        moment -= sign * offset
    return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)


# --- internals -------------------------------------------------------------------------------


def _blank_row() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS)
    row["cached"] = False
    return row


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _is_text_token(item: Any) -> bool:
    return isinstance(item, str) and not is_uri(item)


def _normalize_output(output: Any) -> Any:
    # A list of plain strings is a streamed text (tokens); a list of URLs is files: keep it.
    if isinstance(output, list) and output and all(_is_text_token(item) for item in output):
        return "".join(output)
    return output


def _object_array(values: list[Any]) -> np.ndarray:
    # Filled one by one: numpy would otherwise turn equal-length lists into a 2-D array.
    array = np.empty(len(values), dtype=object)
    for position, value in enumerate(values):
        array[position] = value
    return array
