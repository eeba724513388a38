"""Frame <-> jobs: rows of a DataFrame into prediction jobs, and results back into columns.

The names of `columns` (what a result frame holds), `plan` (a frame into `Job`s) and `assemble`
(outcomes back into columns) in one place, as callers have always imported them.

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

from replibatch._table.assemble import assemble, error_row, one_line, parse_timestamp, prediction_row
from replibatch._table.columns import (
    ADDED_COLUMNS,
    CACHE_KEY_COLUMN,
    MAX_ERROR_CHARS,
    MODEL_COLUMN,
    RESULT_COLUMNS,
    SAMPLE_COLUMN,
    STATUSES,
    TIMELINE_COLUMNS,
    TOKEN_COLUMNS,
)
from replibatch._table.plan import Job, Plan, is_result_frame, plan_jobs

__all__ = [
    "ADDED_COLUMNS",
    "CACHE_KEY_COLUMN",
    "MAX_ERROR_CHARS",
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
