"""Planning a frame into jobs: which column is the model, which are inputs, one `Job` per row.

Pure: nothing here sends, sleeps or reads the clock. `plan_jobs` checks the whole call before
anything is spent (column roles are described in `replibatch._table.frame`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from replibatch._table.cells import MISSING, CellError, convert_cells, is_missing
from replibatch._table.columns import (
    ADDED_COLUMNS,
    MODEL_COLUMN,
    RESERVED_COLUMNS,
    SAMPLE_COLUMN,
    STATUSES,
)
from replibatch._table.refs import ModelRef, parse_model_ref
from replibatch.errors import ConfigurationError

__all__ = ["Job", "Plan", "is_result_frame", "plan_jobs"]


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
            and column not in RESERVED_COLUMNS
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
