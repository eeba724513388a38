"""The columns of a result frame: which a run adds, which are the user's, and the row statuses.

Shared by planning (`plan`: these are never model inputs) and assembly (`assemble`: these are
written), and by every view that reads a result frame.
"""

from __future__ import annotations

__all__ = [
    "ADDED_COLUMNS",
    "CACHE_KEY_COLUMN",
    "FLOAT_COLUMNS",
    "INT_TOKEN_COLUMNS",
    "MAX_ERROR_CHARS",
    "MODEL_COLUMN",
    "RESERVED_COLUMNS",
    "RESULT_COLUMNS",
    "SAMPLE_COLUMN",
    "STATUSES",
    "TIMELINE_COLUMNS",
    "TOKEN_COLUMNS",
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
RESERVED_COLUMNS = ADDED_COLUMNS | {SAMPLE_COLUMN}
FLOAT_COLUMNS = frozenset(("queue_s", "predict_s", "latency_s", "cost_usd"))
INT_TOKEN_COLUMNS = frozenset(("input_token_count", "output_token_count"))
