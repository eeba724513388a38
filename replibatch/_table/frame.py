"""Frame <-> jobs: rows of a DataFrame into prediction jobs, and results back into columns.

Pure: nothing here sends, sleeps or reads the clock. `plan_jobs` checks the whole call before
anything is spent; `prediction_row` / `error_row` turn one outcome into result-column values;
`assemble` builds the returned frame.

Column roles in the input frame:

- the model column (``model`` by default, or the column named by ``model=``),
- ``sample``: the sample index (int >= 0, as made by ``grid(repeat=N)``). It is never a model
  input by default: identical inputs with different samples are distinct runs and cache entries,
- result columns (``output``, ``status``, ... and the token columns): never inputs. A result
  frame run again (`is_result_frame`) gets them overwritten in place. Any other frame with one
  of them is refused (the run would silently overwrite the user's column),
- every other column is a model input unless ``inputs=`` says otherwise. Input column names
  must be strings (MultiIndex columns are refused).

Plain strings stay text: a string is read as a file only in a column named in ``files=`` (or,
later, where the model's schema says the input is a file: ``schema.shape_input``). Floats are
kept as floats here; ``shape_input`` turns whole ones into ints where the schema allows.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from replibatch._table.cells import MISSING, CellError, convert_cells, is_missing
from replibatch._table.inputs import is_uri
from replibatch._table.refs import ModelRef, parse_model_ref
from replibatch.errors import ConfigurationError

__all__ = [
    "ADDED_COLUMNS",
    "CACHE_KEY_COLUMN",
    "MODEL_COLUMN",
    "RESULT_COLUMNS",
    "SAMPLE_COLUMN",
    "STATUSES",
    "TIMELINE_COLUMNS",
    "TOKEN_COLUMNS",
    "Job",
    "Plan",
    "assemble",
    "error_row",
    "is_result_frame",
    "one_line",
    "parse_timestamp",
    "plan_jobs",
    "prediction_row",
]

MODEL_COLUMN = "model"
SAMPLE_COLUMN = "sample"
RESULT_COLUMNS: tuple[str, ...] = (
    "output",
    "status",
    "error",
    "prediction_id",
    "version",
    "queue_s",
    "predict_s",
    "latency_s",
    "cost_usd",
    "cost_basis",
    "cached",
)
TOKEN_COLUMNS: tuple[str, ...] = (
    "input_token_count",
    "output_token_count",
    "time_to_first_token",
    "tokens_per_second",
)
STATUSES: tuple[str, ...] = ("succeeded", "failed", "canceled", "timeout", "skipped_budget", "error")
"""Final row statuses; `prediction_row` also passes ``starting``/``processing`` through."""

MAX_ERROR_CHARS = 500

TIMELINE_COLUMNS: tuple[str, ...] = ("submitted_at", "completed_at")
"""Client-clock epoch seconds of each row's create and result, added by the runner."""
CACHE_KEY_COLUMN = "cache_key"
"""The row's cache key (`replibatch._store.keys.cache_key`), added by the runner; None when the row
could not be keyed (its model did not resolve). Ratings are stored under it (ratings.py)."""
ADDED_COLUMNS: frozenset[str] = frozenset(
    (MODEL_COLUMN, *RESULT_COLUMNS, *TOKEN_COLUMNS, *TIMELINE_COLUMNS, CACHE_KEY_COLUMN)
)
"""Every column a run may add to the frame; anything else is the user's."""

# Never model inputs by default: what a run adds (so a result frame can be run again) and the
# sample index.
_RESERVED_COLUMNS = ADDED_COLUMNS | {SAMPLE_COLUMN}
_FLOAT_COLUMNS = frozenset(("queue_s", "predict_s", "latency_s", "cost_usd"))
_INT_TOKEN_COLUMNS = frozenset(("input_token_count", "output_token_count"))


@dataclass
class Job:
    """One row to run: its 0-based `position` in the frame, model reference and input.

    `model` is the canonical reference text and `ref` its parsed form. `input` holds JSON types,
    with file inputs as `FileInput` objects (possibly nested in lists/dicts). `sample` is the
    row's sample index (0 unless the frame has a ``sample`` column).
    """

    position: int
    model: str
    input: dict[str, Any]
    sample: int = 0
    ref: ModelRef | None = field(default=None, repr=False)


@dataclass
class Plan:
    """The jobs for a frame, and where the model came from.

    `input_columns` maps each input name to the frame column it is read from.
    """

    jobs: list[Job]
    model_column: str | None
    model_from_argument: bool
    input_columns: dict[str, Hashable] = field(default_factory=dict)


def plan_jobs(
    df: pd.DataFrame,
    model: str | ModelRef | None = None,
    inputs: Sequence[Hashable] | Mapping[str, Hashable] | str | None = None,
    files: Sequence[Hashable] | str | None = None,
) -> Plan:
    """Turn every row of `df` into a Job; check the whole call first.

    `model`: a column of `df` (a column name wins over a reference spelled the same), or a
    reference used for every row (default: the column ``model``). `inputs`: None for every
    column but the model, ``sample`` and result columns; a list of columns; or a dict mapping
    input name -> column. NaN/None cells are left out of that row's input; numpy/pandas
    scalars become plain JSON types; Paths, bytes, file objects and images become FileInputs.
    `files`: input names (or columns) whose strings are local file paths to send as files.

    Raises ConfigurationError (a ValueError) naming the column, row label and value type for: a
    frame that is not a DataFrame or is empty, MultiIndex or non-string input column names, a
    column that collides with a result column (or a ``model`` column with a `model` reference),
    no model, an unknown or duplicated column, an unparseable reference, a value that cannot be
    sent (not JSON, a lone surrogate, an integer beyond 64 bits), duplicate input names, a bad
    sample index, a `files` name that is no input or a cell there that is no existing file.
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigurationError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ConfigurationError("the frame is empty: there are no rows to run")
    if isinstance(df.columns, pd.MultiIndex):
        raise ConfigurationError(
            "the frame has MultiIndex columns; input names must be plain strings: flatten them "
            "first, e.g. df.columns = ['_'.join(map(str, c)) for c in df.columns]"
        )
    result_frame = is_result_frame(df)
    if not result_frame:
        _check_collisions(df, model)

    model_column, refs = _plan_models(df, model)
    input_columns = _input_columns(df, inputs, model_column)
    file_names = _file_inputs(input_columns, files)
    samples = _samples(df)

    converted = [
        (name, _convert_column(df, column, as_files=name in file_names))
        for name, column in input_columns.items()
    ]
    jobs = []
    for position in range(len(df)):
        row_input = {}
        for name, values in converted:
            value = values[position]
            if value is not MISSING:
                row_input[name] = value
        ref = refs[position]
        jobs.append(Job(position, str(ref), row_input, samples[position], ref))
    return Plan(jobs, model_column, model_column is None, input_columns)


def is_result_frame(df: pd.DataFrame) -> bool:
    """True when `df` is (a part of) a frame a run returned, being run again: it carries the run
    summary, or it has ``output`` and a ``status`` column holding row statuses (at least one)."""
    if isinstance(df.attrs.get("replibatch"), Mapping):
        return True
    if "output" not in df.columns or "status" not in df.columns:
        return False
    statuses = df["status"]
    if isinstance(statuses, pd.DataFrame):
        return False
    known = set(STATUSES) | {"starting", "processing"}
    present = [value for value in statuses.unique() if not is_missing(value)]
    return bool(present) and all(isinstance(v, str) and v in known for v in present)


def _check_collisions(df: pd.DataFrame, model: Any) -> None:
    """Refuse user columns the run would overwrite: result columns, or ``model`` when `model`
    is a reference (the run would replace that column with the reference)."""
    for column in df.columns:
        if column in ADDED_COLUMNS and column != MODEL_COLUMN:
            raise ConfigurationError(
                f"column {column!r} collides with the result column of the same name, which the "
                f"run would overwrite: rename it (e.g. df.rename(columns={{{column!r}: "
                f"{column + '_in'!r}}})) and, if the model has an input of that name, map it with "
                f"inputs={{{column!r}: {column + '_in'!r}, ...}}"
            )
    if model is None or MODEL_COLUMN not in df.columns:
        return
    if isinstance(model, ModelRef) or (isinstance(model, str) and model not in df.columns):
        raise ConfigurationError(
            f"the frame has a {MODEL_COLUMN!r} column and model={str(model)!r} was given too: drop "
            f"model= to run the column's models, or rename the column (it would be replaced)"
        )


def _file_inputs(
    input_columns: Mapping[str, Hashable], files: Sequence[Hashable] | str | None
) -> set[str]:
    if files is None:
        return set()
    wanted = [files] if isinstance(files, str) else list(files)
    names = set()
    for item in wanted:
        matches = [name for name, column in input_columns.items() if item in (name, column)]
        if not matches:
            raise ConfigurationError(
                f"files= names {item!r}, which is not an input; inputs: {list(input_columns)!r}"
            )
        names.update(matches)
    return names


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
            row[column] = int(value) if column in _INT_TOKEN_COLUMNS else value
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
        if column in _FLOAT_COLUMNS or column in ("time_to_first_token", "tokens_per_second"):
            new[column] = np.array(
                [np.nan if value is None else value for value in values], dtype="float64"
            )
        elif column in _INT_TOKEN_COLUMNS:
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


def _label(df: pd.DataFrame, position: int) -> Hashable:
    label = df.index[position]
    # np.int64(11) reads badly in a message; 11 does not.
    return label.item() if isinstance(label, np.generic) else label


def _column_values(df: pd.DataFrame, column: Hashable) -> list[Any]:
    selected = df[column]
    if isinstance(selected, pd.DataFrame):
        raise ConfigurationError(f"the frame has more than one column named {column!r}")
    return selected.tolist()


def _plan_models(df: pd.DataFrame, model: str | ModelRef | None) -> tuple[str | None, list[ModelRef]]:
    if isinstance(model, ModelRef):
        return None, [model] * len(df)
    if model is None:
        if MODEL_COLUMN not in df.columns:
            raise ConfigurationError(
                f"no model given: pass model='owner/name' (or a column name), or add a "
                f"{MODEL_COLUMN!r} column; the frame's columns are {list(df.columns)!r}"
            )
        model = MODEL_COLUMN
    if isinstance(model, str) and model in df.columns:
        parsed: dict[Any, ModelRef] = {}
        refs = []
        for position, value in enumerate(_column_values(df, model)):
            try:
                ref = parsed.get(value) if isinstance(value, Hashable) else None
            except TypeError:
                ref = None
            if ref is None:
                if is_missing(value):
                    raise ConfigurationError(
                        f"column {model!r}, row {_label(df, position)!r}: no model reference"
                    )
                try:
                    ref = parse_model_ref(value)
                except ConfigurationError as exc:
                    raise ConfigurationError(
                        f"column {model!r}, row {_label(df, position)!r}: {exc}"
                    ) from None
                parsed[value] = ref
            refs.append(ref)
        return model, refs
    if not isinstance(model, str):
        raise ConfigurationError(
            f"model must be a column name or a model reference string, got {type(model).__name__}"
        )
    try:
        ref = parse_model_ref(model)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (and it is not a column of the frame)") from None
    return None, [ref] * len(df)


def _input_columns(
    df: pd.DataFrame,
    inputs: Sequence[Hashable] | Mapping[str, Hashable] | str | None,
    model_column: str | None,
) -> dict[str, Hashable]:
    pairs: list[tuple[Hashable, Hashable]]
    if inputs is None:
        pairs = [
            (column, column)
            for column in df.columns
            # `model_column` is None when the model came from the argument: a column named
            # None is then the user's like any other (and refused below for its name).
            if (model_column is None or column != model_column)
            and column not in _RESERVED_COLUMNS
        ]
    elif isinstance(inputs, str):
        pairs = [(inputs, inputs)]
    elif isinstance(inputs, Mapping):
        pairs = list(inputs.items())
    elif isinstance(inputs, (list, tuple, pd.Index)):
        pairs = [(column, column) for column in inputs]
    else:
        raise ConfigurationError(
            f"inputs must be None, a list of columns or a dict of input name -> column, "
            f"got {type(inputs).__name__}"
        )
    mapping: dict[str, Hashable] = {}
    for name, column in pairs:
        if not isinstance(name, str):
            raise ConfigurationError(
                f"column {column!r} has a {type(column).__name__} name, but model input names are "
                f"strings: rename the columns (e.g. df.columns = df.columns.map(str)), or map "
                f"names to columns with inputs={{'prompt': {column!r}}}"
            )
        if column not in df.columns:
            raise ConfigurationError(
                f"input column {column!r} is not in the frame; columns: {list(df.columns)!r}"
            )
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(
                f"input name {name!r} holds a lone surrogate and cannot be sent: rename it"
            ) from None
        name = str(name)
        if name in mapping:
            raise ConfigurationError(f"duplicate input name {name!r}")
        mapping[name] = column
    return mapping


def _samples(df: pd.DataFrame) -> list[int]:
    if SAMPLE_COLUMN not in df.columns:
        return [0] * len(df)
    samples = []
    for position, value in enumerate(_column_values(df, SAMPLE_COLUMN)):
        if is_missing(value):
            samples.append(0)
            continue
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, (int, np.integer))
            or value < 0
        ):
            raise ConfigurationError(
                f"column {SAMPLE_COLUMN!r}, row {_label(df, position)!r}: the sample index must "
                f"be an int >= 0, got {type(value).__name__} {value!r}"
            )
        samples.append(int(value))
    return samples


def _convert_column(df: pd.DataFrame, column: Hashable, *, as_files: bool = False) -> list[Any]:
    """The column's cells as JSON values (missing: `MISSING`), see `cells.convert_cells`.

    Raises ConfigurationError naming column and row for a cell that cannot be sent."""
    try:
        return convert_cells(_column_values(df, column), as_files=as_files)
    except CellError as exc:
        raise ConfigurationError(
            f"column {column!r}, row {_label(df, exc.position)!r}: {exc}"
        ) from None
