"""`Row`: built from the frame's row values, back to exactly the frame's columns."""

from __future__ import annotations

import math

import pytest

from replibatch._engine.result import Row
from replibatch._table import frame as frames

RECORD = {
    "id": "p1", "status": "succeeded", "version": "v1", "output": ["Hel", "lo"],
    "created_at": "2026-01-01T00:00:00Z", "started_at": "2026-01-01T00:00:01Z",
    "metrics": {"predict_time": 2.5, "output_token_count": 7},
}


def test_a_prediction_row_round_trips_to_the_same_columns():
    values = frames.prediction_row(RECORD, latency_s=3.0)
    row = Row.from_columns(values)
    assert row.output == "Hello" and row.queue_s == 1.0 and row.tokens == {"output_token_count": 7}
    columns = row.columns()
    assert {k: columns[k] for k in values} == values
    assert set(columns) == set(values) | {*frames.TIMELINE_COLUMNS, frames.CACHE_KEY_COLUMN}


def test_what_is_stored_leaves_out_what_belongs_to_the_run():
    row = Row.from_columns(frames.prediction_row(RECORD))
    row.cached, row.submitted_at, row.cache_key = True, 1.0, "k"
    stored = row.stored()
    assert "cached" not in stored and frames.CACHE_KEY_COLUMN not in stored
    assert not set(frames.TIMELINE_COLUMNS) & set(stored)
    again = Row.from_columns(stored)  # a cache hit
    assert again.stored() == stored and again.cached is False


def test_partial_values_take_the_slow_path_with_the_same_meaning():
    row = Row.from_columns({"status": "error", "error": "boom", "input_token_count": 3})
    assert (row.status, row.error, row.output, row.cost_usd) == ("error", "boom", None, None)
    assert row.tokens == {"input_token_count": 3}
    with pytest.raises(KeyError):
        Row.from_columns({"error": "no status"})


def test_failed_rows_are_one_line_and_never_succeeded():
    assert Row.failed("timeout", "took\n too long").error == "took too long"
    with pytest.raises(ValueError):
        Row.failed("succeeded", "no")


def test_a_shared_row_costs_nothing_and_names_its_leader():
    leader = Row.from_columns(frames.prediction_row(RECORD))
    leader.cost_usd, leader.cost_basis, leader.submitted_at = 0.25, "2.5 s x gpu", 5.0
    follower = leader.shared_by(3)
    assert follower.cost_usd == 0.0 and "row #3" in (follower.cost_basis or "")
    assert follower.shared and follower.submitted_at == 5.0 and follower.output == leader.output
    assert leader.cost_usd == 0.25 and not leader.shared
    unknown = Row.failed("error", "x")
    unknown.cost_usd = math.nan
    assert math.isnan(unknown.shared_by(0).cost_usd or 0.0)
