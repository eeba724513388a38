"""What a finished prediction means for its row: the statuses that are not what they look like.

Pure functions over a prediction record and the row `frame.prediction_row` built from it:

- ``aborted`` (a ``Cancel-After`` deadline passed before the prediction started; the spec's
  ``schemas_prediction_response`` lists it as a terminal status) ends the row ``timeout``, cost
  0: nothing ran, nothing was billed.
- ``succeeded`` with ``data_removed: true`` and no output (Replicate deletes input and output an
  hour after completion; the sim does the same, ``sim/server.py`` expiry) is not a success: the
  row ends ``error`` saying so, keeps its billed cost, and is never cached as succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ABORTED_BASIS", "apply_final_status", "is_aborted", "output_was_deleted"]

ABORTED_BASIS = "aborted before it started (Cancel-After deadline): not billed"


def is_aborted(record: Mapping[str, Any]) -> bool:
    return record.get("status") == "aborted"


def output_was_deleted(record: Mapping[str, Any]) -> bool:
    """True for a success whose output Replicate already deleted (nothing left to save)."""
    return (
        record.get("status") == "succeeded"
        and bool(record.get("data_removed"))
        and record.get("output") is None
    )


def apply_final_status(
    row: dict[str, Any], record: Mapping[str, Any], *, timed_out: bool, timeout: float | None
) -> None:
    """Correct `row`'s status/error (and, for ``aborted``, its cost) for what `record` really
    means. `timed_out`: our own deadline passed and the prediction was canceled unfinished."""
    if is_aborted(record):
        row.update(
            status="timeout",
            error=f"aborted: the deadline (timeout={timeout} s) passed before it started; not billed",
            cost_usd=0.0,
            cost_basis=ABORTED_BASIS,
        )
    elif timed_out:
        row.update(
            status="timeout", error=f"no result within timeout={timeout} s; canceled on Replicate"
        )
    elif output_was_deleted(record):
        row.update(
            status="error",
            output=None,
            error=(
                f"prediction {record.get('id')} succeeded but Replicate had already deleted its "
                "output (data_removed) before replibatch saved it; it was billed; the next run "
                "creates it again"
            ),
        )
