"""Planning trainings (pure): columns become inputs, the destination is checked, keys follow
what determines a training, and result rows read Replicate's training record."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from replibatch._table.inputs import FileInput
from replibatch._table.training_plan import (
    TRAINING_COLUMNS,
    assemble_trainings,
    plan_trainings,
    training_key,
    training_row,
)
from replibatch.errors import ConfigurationError

ZIP = Path(__file__).resolve().parents[2] / "data" / "fine_tune" / "sea-stories.zip"


def test_columns_are_inputs_files_are_files_and_missing_cells_are_left_out():
    df = pd.DataFrame({"train_data": [ZIP, ZIP], "steps": [100, None], "dest": ["a/b", "a/c"]})
    plan = plan_trainings(df, destination="dest")
    assert [j.destination for j in plan.jobs] == ["a/b", "a/c"]
    assert isinstance(plan.jobs[0].input["train_data"], FileInput)
    assert plan.jobs[0].input["steps"] == 100 and "steps" not in plan.jobs[1].input
    assert "dest" not in plan.jobs[0].input


def test_result_columns_of_a_trained_frame_are_not_inputs():
    df = pd.DataFrame({"steps": [1], "status": ["succeeded"], "version": ["a/b:1"], "cache_key": ["k"]})
    assert plan_trainings(df, destination="a/b").jobs[0].input == {"steps": 1}


@pytest.mark.parametrize("destination", ["nobody", "a/b/c", "", "/b"])
def test_a_destination_that_is_neither_a_column_nor_a_model_is_refused(destination):
    with pytest.raises(ConfigurationError, match="destination"):
        plan_trainings(pd.DataFrame({"steps": [1]}), destination=destination)


def test_files_columns_take_paths_and_refuse_missing_ones(tmp_path):
    df = pd.DataFrame({"data": [str(ZIP)]})
    assert isinstance(plan_trainings(df, destination="a/b", files="data").jobs[0].input["data"], FileInput)
    assert plan_trainings(df, destination="a/b").jobs[0].input["data"] == str(ZIP)  # text
    with pytest.raises(ConfigurationError, match="not an existing local file"):
        plan_trainings(pd.DataFrame({"data": [str(tmp_path / "gone.zip")]}), destination="a/b",
                       files=["data"])


def test_the_key_is_version_content_and_destination():
    one = {"data": FileInput.from_bytes(b"zip one", filename="a.zip"), "steps": 100}
    same = {"steps": 100.0, "data": FileInput.from_bytes(b"zip one", filename="a.zip")}
    other = {"data": FileInput.from_bytes(b"zip two", filename="a.zip"), "steps": 100}
    key = training_key("v1", one, "me/x")
    assert key == training_key("v1", same, "me/x")
    assert len({key, training_key("v2", one, "me/x"), training_key("v1", one, "me/y"),
                training_key("v1", other, "me/x")}) == 4


def test_a_training_record_becomes_a_row():
    record = {"id": "t1", "status": "succeeded", "created_at": "2026-01-01T00:00:00Z",
              "started_at": "2026-01-01T00:00:02Z", "metrics": {"predict_time": 30.5},
              "output": {"version": "me/x:abc", "weights": "https://x/w"}}
    row = training_row(record, latency_s=40.0)
    assert row["version"] == "me/x:abc" and row["queue_s"] == 2.0 and row["predict_s"] == 30.5
    assert row["latency_s"] == 40.0 and row["error"] is None and math.isnan(row["cost_usd"])
    failed = training_row({"id": "t2", "status": "failed", "error": "bad zip", "output": None})
    assert failed["status"] == "failed" and failed["error"] == "bad zip" and failed["version"] is None
    odd = training_row({"id": "t3", "status": "succeeded", "output": None})
    assert odd["status"] == "error" and "no version" in odd["error"]


def test_assemble_keeps_the_index_and_adds_the_columns_in_order():
    df = pd.DataFrame({"steps": [1, 2]}, index=["a", "b"])
    rows = [training_row({"id": "t", "status": "canceled"}), training_row({"id": "u", "status": "failed"})]
    out = assemble_trainings(df, rows)
    assert list(out.index) == ["a", "b"] and list(out.columns) == ["steps", *TRAINING_COLUMNS]
    assert out["cached"].dtype == bool and out["predict_s"].dtype == float
