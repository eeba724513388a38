"""Planning a frame of trainings and shaping their result rows (pure: no I/O).

Each row of the frame is one training: its columns are the training inputs (hyper-parameters,
the training-data file or URL), except the destination column and the columns `rb.train` adds.
A training-data cell holding a ``pathlib.Path``, bytes or a binary file object is a file; a
string is a file where the trainer's ``TrainingInput`` schema says the input is one
(``format: uri``, `training_schema`) or where the caller listed the column in ``files=``.

The cache key of a training (`training_key`) is the prediction key form of
`replibatch._store.keys` over the trainer's resolved version, prefixed ``training:`` so it can
never equal a prediction's, and a document of the canonical input (files by content hash) and
the destination: the same hyper-parameters trained towards another model are another training.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from replibatch._store.keys import cache_key
from replibatch._table.cells import MISSING, CellError, convert_cells
from replibatch._table.frame import one_line, parse_timestamp
from replibatch._table.schema import InputSchema
from replibatch.errors import ConfigurationError

__all__ = [
    "TRAINING_COLUMNS",
    "TrainingJob",
    "TrainingPlan",
    "assemble_trainings",
    "error_training_row",
    "plan_trainings",
    "training_key",
    "training_row",
    "training_schema",
]

TRAINING_COLUMNS: tuple[str, ...] = (
    "training_id",
    "status",
    "error",
    "version",
    "queue_s",
    "predict_s",
    "latency_s",
    "cost_usd",
    "cost_basis",
    "cached",
)
"""The columns `rb.train` adds, in order; a result frame trained again ignores them."""
_FLOAT_COLUMNS = ("queue_s", "predict_s", "latency_s", "cost_usd")
_RESERVED = frozenset((*TRAINING_COLUMNS, "cache_key"))


@dataclass
class TrainingJob:
    """One training to run: the row's 0-based `position`, its `input` (JSON types, files as
    `replibatch._table.inputs.FileInput`) and the `destination` model ``owner/name``."""

    position: int
    input: dict[str, Any]
    destination: str


@dataclass
class TrainingPlan:
    """The jobs of a frame; `destination_column` is None when one destination was given."""

    jobs: list[TrainingJob]
    destination_column: Hashable | None
    input_columns: list[Hashable] = field(default_factory=list)


def _check_model_name(text: Any, where: str) -> str:
    if not isinstance(text, str) or text.count("/") != 1 or not all(text.split("/")):
        raise ConfigurationError(f"{where} must be a model 'owner/name', got {text!r}")
    return text.strip()


def plan_trainings(
    df: pd.DataFrame,
    *,
    destination: str,
    inputs: Sequence[Hashable] | None = None,
    files: Sequence[Hashable] | str | None = None,
) -> TrainingPlan:
    """The trainings of `df`: one per row.

    `destination` is a model ``owner/name`` or the name of a column holding one per row;
    `inputs` limits the input columns (default: every column but the destination's and those
    `rb.train` adds); `files` names columns whose strings are local files (or URLs).

    Raises ConfigurationError (a ValueError) for an empty frame, a destination that is neither
    a column nor ``owner/name``, an unknown column, a column name that is not a string, or a
    cell that cannot be sent (naming column and row).
    """
    if not isinstance(df, pd.DataFrame):
        raise ConfigurationError(f"train needs a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ConfigurationError("the frame has no rows: nothing to train")
    column = destination if isinstance(destination, str) and destination in df.columns else None
    if column is None:
        _check_model_name(destination, "destination (a model or a column of the frame)")
    chosen: list[Hashable] = list(inputs) if inputs is not None else [
        c for c in df.columns if c != column and c not in _RESERVED
    ]
    as_files = {files} if isinstance(files, str) else set(files or ())
    for name in [*chosen, *as_files]:
        if name not in df.columns:
            raise ConfigurationError(f"column {name!r} is not in the frame; columns: {list(df.columns)!r}")
        if not isinstance(name, str):
            raise ConfigurationError(f"column {name!r}: training input names must be strings")
    cells = {}
    for name in chosen:
        try:
            cells[name] = convert_cells(df[name].tolist(), as_files=name in as_files)
        except CellError as exc:
            raise ConfigurationError(
                f"column {name!r}, row {df.index[exc.position]!r}: {exc}"
            ) from None
    jobs = []
    for position in range(len(df)):
        target = destination
        if column is not None:
            target = _check_model_name(
                df[column].iloc[position], f"column {column!r}, row {df.index[position]!r}"
            )
        values = {str(n): cells[n][position] for n in chosen if cells[n][position] is not MISSING}
        jobs.append(TrainingJob(position, values, target.strip()))
    return TrainingPlan(jobs, column, chosen)


def training_schema(openapi: Any) -> InputSchema | None:
    """The ``TrainingInput`` schema of a trainable version's ``openapi_schema`` (Cog publishes
    it beside ``Input``), or None when the version has none."""
    if not isinstance(openapi, Mapping):
        return None
    schemas = (openapi.get("components") or {}).get("schemas") or {}
    if not isinstance(schemas, Mapping) or not isinstance(schemas.get("TrainingInput"), Mapping):
        return None
    return InputSchema.from_openapi(
        {"components": {"schemas": {**schemas, "Input": schemas["TrainingInput"]}}}
    )


def training_key(trainer_version: str, input: Mapping[str, Any], destination: str) -> str:
    """The cache key of one training (see the module docstring). Raises like `cache_key`."""
    return cache_key(f"training:{trainer_version}", {"destination": destination, "input": input})


def _seconds(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return math.nan


def training_row(record: Mapping[str, Any], *, latency_s: float | None = None) -> dict[str, Any]:
    """Result-column values of a training record as Replicate returns it (cost left NaN for
    the caller). ``version`` is the new version ``owner/name:id`` from ``output.version``, the
    reference `rb.run` accepts; None unless the training succeeded."""
    status = record.get("status")
    reported = record.get("error")
    error = one_line(reported) if reported not in (None, "") else None
    if status == "failed":
        error = error or "the training failed without an error message"
    elif status == "canceled":
        error = error or "the training was canceled"
    elif status in ("starting", "processing"):
        error = error or f"the training had not finished (status {status!r})"
    elif status != "succeeded":
        error = f"unexpected training status {status!r}" + (f": {error}" if error else "")
        status = "error"
    output = record.get("output")
    version = output.get("version") if isinstance(output, Mapping) else None
    if status == "succeeded" and not isinstance(version, str):
        status, error = "error", "the training succeeded but its output names no version"
    metrics = record.get("metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    created = parse_timestamp(record.get("created_at"))
    started = parse_timestamp(record.get("started_at"))
    queue = max(0.0, started - created) if created is not None and started is not None else None
    return {
        "training_id": record.get("id"),
        "status": status,
        "error": error,
        "version": version if status == "succeeded" else None,
        "queue_s": _seconds(queue),
        "predict_s": _seconds(metrics.get("predict_time")),
        "latency_s": _seconds(latency_s),
        "cost_usd": math.nan,
        "cost_basis": None,
        "cached": False,
    }


def error_training_row(status: str, error: str, *, training_id: str | None = None) -> dict[str, Any]:
    """Result-column values of a row with no usable training (``error``, ``timeout``,
    ``skipped_budget``, ``canceled``)."""
    return {
        "training_id": training_id, "status": status, "error": one_line(error), "version": None,
        "queue_s": math.nan, "predict_s": math.nan, "latency_s": math.nan,
        "cost_usd": math.nan, "cost_basis": None, "cached": False,
    }


def assemble_trainings(df: pd.DataFrame, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """`df` (same index, a copy) with the `TRAINING_COLUMNS` of `rows[i]` for row i; a result
    frame's own result columns are replaced."""
    out = df.drop(columns=[c for c in TRAINING_COLUMNS if c in df.columns]).copy()
    for name in TRAINING_COLUMNS:
        values = [row.get(name) for row in rows]
        if name in _FLOAT_COLUMNS:
            out[name] = pd.Series([_seconds(v) for v in values], index=out.index, dtype=float)
        elif name == "cached":
            out[name] = pd.Series([bool(v) for v in values], index=out.index, dtype=bool)
        else:
            out[name] = pd.Series(values, index=out.index, dtype=object)
    return out
