import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from replibatch._table.frame import (
    RESULT_COLUMNS,
    TOKEN_COLUMNS,
    Job,
    Plan,
    assemble,
    error_row,
    one_line,
    parse_timestamp,
    plan_jobs,
    prediction_row,
)
from replibatch._table.inputs import FileInput
from replibatch._table.refs import parse_model_ref
from replibatch.errors import ConfigurationError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"


# --- plan_jobs ---------------------------------------------------------------------------------


def test_model_argument_applies_to_every_row():
    df = pd.DataFrame({"prompt": ["a", "b"], "temperature": [0.1, 0.9]})
    plan = plan_jobs(df, model=" meta/llama ")
    assert plan.model_from_argument and plan.model_column is None
    assert [job.model for job in plan.jobs] == ["meta/llama", "meta/llama"]
    assert [job.position for job in plan.jobs] == [0, 1]
    assert plan.jobs[1].input == {"prompt": "b", "temperature": 0.9}
    assert plan.jobs[0].ref == parse_model_ref("meta/llama")
    assert plan.input_columns == {"prompt": "prompt", "temperature": "temperature"}


def test_model_column_default_and_named():
    df = pd.DataFrame({"model": ["a/b", f"c/d:{VERSION}"], "engine": ["x/y", "x/z"], "p": [1, 2]})
    plan = plan_jobs(df)
    assert plan.model_column == "model" and not plan.model_from_argument
    assert [job.model for job in plan.jobs] == ["a/b", f"c/d:{VERSION}"]
    assert plan.jobs[0].input == {"engine": "x/y", "p": 1}
    plan = plan_jobs(df, model="engine")
    assert plan.model_column == "engine"
    assert [job.model for job in plan.jobs] == ["x/y", "x/z"]
    # the other model-ish column named "model" is reserved, never an input by default
    assert plan.jobs[0].input == {"p": 1}


def test_no_model_anywhere_raises():
    with pytest.raises(ConfigurationError, match="no model given"):
        plan_jobs(pd.DataFrame({"prompt": ["a"]}))


def test_bad_reference_in_column_names_column_and_row():
    df = pd.DataFrame({"model": ["a/b", "Not A Model"]}, index=["first", "second"])
    with pytest.raises(ConfigurationError, match=r"column 'model', row 'second'.*Not A Model"):
        plan_jobs(df)
    df = pd.DataFrame({"model": ["a/b", None]}, index=[10, 11])
    with pytest.raises(ConfigurationError, match="row 11: no model reference"):
        plan_jobs(df)


def test_bad_reference_argument_raises():
    with pytest.raises(ConfigurationError, match="not a column"):
        plan_jobs(pd.DataFrame({"prompt": ["a"]}), model="prompts")


def test_empty_frame_and_non_frame_raise():
    with pytest.raises(ConfigurationError, match="empty"):
        plan_jobs(pd.DataFrame({"prompt": []}), model="a/b")
    with pytest.raises(ConfigurationError, match="DataFrame"):
        plan_jobs([{"prompt": "a"}], model="a/b")


def test_default_inputs_skip_result_columns_and_sample():
    df = pd.DataFrame(
        {
            "prompt": ["a", "b"],
            "sample": [0, 1],
            "output": ["old", "old"],
            "status": ["succeeded", "failed"],  # a result frame run again
            "tokens_per_second": [1.0, 2.0],
        }
    )
    plan = plan_jobs(df, model="a/b")
    assert [job.input for job in plan.jobs] == [{"prompt": "a"}, {"prompt": "b"}]
    assert [job.sample for job in plan.jobs] == [0, 1]


def test_inputs_list_and_dict():
    df = pd.DataFrame({"text": ["a"], "t": [0.5], "unused": [1]})
    assert plan_jobs(df, model="a/b", inputs=["text"]).jobs[0].input == {"text": "a"}
    assert plan_jobs(df, model="a/b", inputs="t").jobs[0].input == {"t": 0.5}
    plan = plan_jobs(df, model="a/b", inputs={"prompt": "text", "temperature": "t"})
    assert plan.jobs[0].input == {"prompt": "a", "temperature": 0.5}
    assert plan.input_columns == {"prompt": "text", "temperature": "t"}


def test_unknown_and_duplicate_inputs_raise():
    df = pd.DataFrame({"text": ["a"], 1: ["b"], "1": ["c"]})
    with pytest.raises(ConfigurationError, match="'nope' is not in the frame"):
        plan_jobs(df, model="a/b", inputs=["text", "nope"])
    with pytest.raises(ConfigurationError, match="duplicate input name 'text'"):
        plan_jobs(df, model="a/b", inputs=["text", "text"])
    with pytest.raises(ConfigurationError,
                       match="column 1 has a int name, but model input names are strings"):
        plan_jobs(df, model="a/b")  # column 1 would silently become input "1"
    dup = pd.DataFrame([["a", "b"]], columns=["x", "x"])
    with pytest.raises(ConfigurationError, match="duplicate input name 'x'"):
        plan_jobs(dup, model="a/b")
    with pytest.raises(ConfigurationError, match="more than one column named 'x'"):
        plan_jobs(dup, model="a/b", inputs={"y": "x"})


def test_missing_cells_are_left_out_but_lists_are_values():
    df = pd.DataFrame(
        {
            "prompt": ["a", None, "c"],
            "seed": pd.array([1, None, 3], dtype="Int64"),
            "t": [np.nan, 0.2, 0.3],
            "stop": [["\n"], [], np.array(["x", "y"])],
            "when": pd.to_datetime(["2024-01-02T03:04:05", None, "2024-01-01T00:00:00"]),
        }
    )
    jobs = plan_jobs(df, model="a/b").jobs
    assert jobs[0].input == {"prompt": "a", "seed": 1, "stop": ["\n"], "when": "2024-01-02T03:04:05"}
    assert jobs[1].input == {"t": 0.2, "stop": []}
    assert jobs[2].input["stop"] == ["x", "y"]


def test_numpy_and_pandas_scalars_become_plain_json():
    df = pd.DataFrame(
        {
            "cell": pd.Series(
                [
                    np.int64(3),
                    np.float32(0.5),
                    np.bool_(True),
                    pd.Timestamp("2024-05-06T07:08:09", tz="UTC"),
                    (np.int32(1), [np.float64(2.5), {"k": np.bool_(False)}]),
                    np.array([[1, 2], [3, 4]], dtype=np.uint8),
                    np.str_("text"),
                    np.datetime64("2024-01-01T00:00:00"),
                ],
                dtype=object,
            )
        }
    )
    values = [job.input["cell"] for job in plan_jobs(df, model="a/b").jobs]
    assert values == [
        3,
        0.5,
        True,
        "2024-05-06T07:08:09+00:00",
        [1, [2.5, {"k": False}]],
        [[1, 2], [3, 4]],
        "text",
        "2024-01-01T00:00:00",
    ]
    json.dumps(values)  # plain JSON all the way down
    assert type(values[0]) is int and type(values[1]) is float and type(values[2]) is bool
    assert type(values[6]) is str


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        (object(), "builtins.object"),
        ([1.0, float("nan")], r"float nan at \[1\]"),
        ({"a": [float("inf")]}, r"float inf at \['a'\]\[0\]"),
        (float("inf"), "float inf"),
        ({1: "a"}, "dict key 1"),
        ({"s": {1, 2}}, "builtins.set"),
        (pd.Timedelta(seconds=1), "Timedelta"),
    ],
)
def test_values_that_cannot_be_json_raise_naming_column_row_and_type(cell, problem):
    df = pd.DataFrame({"ok": ["x", "y"], "bad": pd.Series(["fine", cell], dtype=object)})
    df.index = ["r0", "r1"]
    with pytest.raises(ConfigurationError, match=rf"column 'bad', row 'r1': .*{problem}"):
        plan_jobs(df, model="a/b")


def test_files_become_file_inputs_and_prompts_stay_text(tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nxx")
    df = pd.DataFrame(
        {
            "image": [str(image), image, b"\xff\xd8\xffjpeg"],
            "prompt": ["describe cat.png", "a/b c", "https://example.com/cat.png"],
            "refs": [[str(image)], None, None],
        }
    )
    plain = plan_jobs(df, model="a/b").jobs
    # A plain string is text unless its input is a file (files= here; the schema in a run).
    assert plain[0].input["image"] == str(image) and plain[0].input["refs"] == [str(image)]
    assert isinstance(plain[1].input["image"], FileInput)  # a Path is always a file
    jobs = plan_jobs(df, model="a/b", files=["image", "refs"]).jobs
    assert isinstance(jobs[0].input["image"], FileInput)
    assert jobs[0].input["image"] == jobs[1].input["image"]
    assert jobs[2].input["image"].content_type == "image/jpeg"
    assert [job.input["prompt"] for job in jobs] == list(df["prompt"])
    assert jobs[0].input["refs"] == [jobs[0].input["image"]]


def test_sample_index_is_validated():
    df = pd.DataFrame({"p": ["a", "b", "c"], "sample": [0.0, 2.0, np.nan]})
    assert [job.sample for job in plan_jobs(df, model="a/b").jobs] == [0, 2, 0]
    for bad in ([-1, 0, 0], [0.5, 0, 0], ["one", 0, 0]):
        df = pd.DataFrame({"p": ["a", "b", "c"], "sample": pd.Series(bad, dtype=object)})
        with pytest.raises(ConfigurationError, match="sample"):
            plan_jobs(df, model="a/b")


def test_many_rows_plan_whole():  # speed is measured in bench/cache.py, not asserted here
    n = 100_000
    df = pd.DataFrame(
        {"prompt": [f"p{i}" for i in range(n)], "t": np.linspace(0, 1, n), "seed": np.arange(n)}
    )
    plan = plan_jobs(df, model="a/b")
    assert len(plan.jobs) == n
    assert plan.jobs[-1].input == {"prompt": f"p{n - 1}", "t": 1.0, "seed": n - 1}


# --- prediction_row ----------------------------------------------------------------------------


def _record(**fields):
    base = {
        "id": "abc",
        "version": VERSION,
        "status": "succeeded",
        "created_at": "2024-04-22T11:15:15.329Z",
        "started_at": "2024-04-22T11:15:16.829Z",
        "metrics": {"predict_time": 3.25},
        "output": "hello",
        "error": None,
    }
    base.update(fields)
    return base


def test_succeeded_record():
    row = prediction_row(_record(), latency_s=7.5)
    assert set(RESULT_COLUMNS) <= set(row)
    assert row["status"] == "succeeded" and row["error"] is None
    assert row["prediction_id"] == "abc" and row["version"] == VERSION
    assert row["queue_s"] == pytest.approx(1.5)
    assert row["predict_s"] == 3.25 and row["latency_s"] == 7.5
    assert row["output"] == "hello" and row["cached"] is False
    assert row["cost_usd"] is None and not set(TOKEN_COLUMNS) & set(row)


def test_streamed_tokens_are_joined_but_urls_kept():
    assert prediction_row(_record(output=["Hel", "lo", " world", ""]))["output"] == "Hello world"
    urls = ["https://replicate.delivery/a/out-0.png", "https://replicate.delivery/a/out-1.png"]
    assert prediction_row(_record(output=urls))["output"] == urls
    data = ["data:image/png;base64,AAAA"]
    assert prediction_row(_record(output=data))["output"] == data
    assert prediction_row(_record(output=[]))["output"] == []
    assert prediction_row(_record(output={"text": "x"}))["output"] == {"text": "x"}
    assert prediction_row(_record(output=[1, 2]))["output"] == [1, 2]


def test_token_metrics_when_reported():
    metrics = {
        "predict_time": 1.5,
        "input_token_count": 8,
        "output_token_count": 43.0,
        "time_to_first_token": 0.25,
        "tokens_per_second": 30.5,
        "total_time": 2.0,
    }
    row = prediction_row(_record(metrics=metrics))
    assert [row[column] for column in TOKEN_COLUMNS] == [8, 43, 0.25, 30.5]
    assert type(row["output_token_count"]) is int


@pytest.mark.parametrize(
    ("status", "error", "expected_status", "expected_error"),
    [
        ("failed", "CUDA out of memory", "failed", "CUDA out of memory"),
        ("failed", None, "failed", "the prediction failed without an error message"),
        ("canceled", None, "canceled", "the prediction was canceled"),
        ("aborted", None, "canceled", "aborted: terminated before it started running"),
        ("aborted", "deadline", "canceled", "aborted: terminated before it started running: deadline"),
        ("processing", None, "processing", "the prediction had not finished (status 'processing')"),
        ("weird", None, "error", "unexpected prediction status 'weird'"),
        (None, None, "error", "unexpected prediction status None"),
    ],
)
def test_unsuccessful_statuses(status, error, expected_status, expected_error):
    row = prediction_row(_record(status=status, error=error, output=None))
    assert (row["status"], row["error"]) == (expected_status, expected_error)


def test_sparse_record_gives_none_not_errors():
    row = prediction_row({"id": "x", "status": "starting", "version": "hidden"})
    assert row["version"] == "hidden"
    assert row["queue_s"] is None and row["predict_s"] is None and row["output"] is None


def test_clock_skew_never_gives_negative_queue_time():
    row = prediction_row(
        _record(created_at="2023-08-16T18:57:08.394251Z", started_at="2023-08-16T18:57:08.366092Z")
    )
    assert row["queue_s"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "2023-11-27T13:35:45.99397566Z",
        "2023-11-27T13:35:45.993975660Z",
        "2023-11-27T13:35:45.993975+00:00",
        "2023-11-27T15:35:45.993975+02:00",
        "2023-11-27T08:35:45.993975-0500",
        "2023-11-27 13:35:45.993975",
    ],
)
def test_timestamps_parse_to_the_same_instant(text):
    expected = datetime(2023, 11, 27, 13, 35, 45, 993975, tzinfo=timezone.utc).timestamp()
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", [None, "", "yesterday", "2023-13-40T00:00:00Z", 12])
def test_bad_timestamps_are_none(text):
    assert parse_timestamp(text) is None


# --- recorded responses ------------------------------------------------------------------------


def _responses(name):
    cassette = yaml.safe_load((FIXTURES / "cassettes" / name).read_text())
    for interaction in cassette["interactions"]:
        response = interaction["response"]
        body = response.get("content")
        if body is None:
            body = (response.get("body") or {}).get("string")
        yield interaction["request"], response, json.loads(body)


def test_recorded_succeeded_prediction():
    rows = [prediction_row(body) for _, _, body in _responses("predictions-get.yaml")]
    for row in rows:
        assert row["status"] == "succeeded" and row["error"] is None
        assert row["prediction_id"] == "vgcm4plb7tgzlyznry5d5jkgvu"
        assert row["predict_s"] == 3.804328
        assert row["output"] == [
            "https://replicate.delivery/pbxt/9inf36wjsEWuQ6XTf84iezPftv9QZdePfGySnU5tUai3BOrWE/out-0.png"
        ]
    assert rows[0]["queue_s"] == pytest.approx(0.005307, abs=1e-6)
    assert rows[1]["queue_s"] == 0.0  # created_at recorded after started_at


def test_recorded_create_replies_without_output_key():
    bodies = [
        body
        for request, _, body in _responses("predictions-create.yaml")
        if request["method"] == "POST"
    ]
    assert bodies and all("output" not in body for body in bodies)
    for body in bodies:
        row = prediction_row(body)
        assert row["status"] == "starting" and row["output"] is None
        assert row["queue_s"] is None and row["predict_s"] is None
        assert "not finished" in row["error"]


def test_recorded_processing_reply_to_prefer_wait():
    (_, response, body), = _responses("test_models_predictions_create_blocking[True-10].yaml")
    assert response["headers"]["Preference-Applied"] == ["wait=10"]
    row = prediction_row(body)
    assert row["status"] == "processing"
    assert row["version"].startswith("dp-")
    assert row["output"] == "".join(body["output"])
    assert row["output"].startswith("\n\nHere is a haiku about llamas")


def test_recorded_cancel():
    bodies = [body for _, _, body in _responses("predictions-cancel.yaml") if "status" in body]
    canceled = [body for body in bodies if body["status"] == "canceled"]
    assert len(canceled) == 1
    row = prediction_row(canceled[0])
    assert row["status"] == "canceled" and row["error"] == "the prediction was canceled"
    assert row["predict_s"] == 0.128148 and row["output"] is None
    assert row["queue_s"] == pytest.approx(0.04698, abs=1e-6)
    # the create reply in that cassette: a deployment-style version, nine fractional digits
    starting = prediction_row(bodies[0])
    assert starting["version"] == "d-c6559c5791b50af57b69f4a73f8e021c"


def test_recorded_error_body_is_not_a_prediction():
    (_, response, body), = _responses("run__invalid-token.yaml")
    assert response["status_code"] == 401
    row = prediction_row(body)
    assert row["status"] == "error" and row["prediction_id"] is None
    # the edge turns such bodies into error rows:
    row = error_row("error", f"HTTP {body['status']}: {body['detail']}")
    assert row["error"] == "HTTP 401: You did not pass a valid authentication token"


# --- error_row / one_line ----------------------------------------------------------------------


def test_error_row_is_one_line_and_truncated():
    row = error_row("timeout", "took\n  too   long\n", prediction_id="p1", latency_s=60)
    assert row["status"] == "timeout" and row["error"] == "took too long"
    assert row["prediction_id"] == "p1" and row["latency_s"] == 60.0
    assert row["output"] is None and row["cached"] is False
    long_row = error_row("error", "x" * 5000)
    assert len(long_row["error"]) <= 500 and long_row["error"].endswith("…")
    with pytest.raises(ValueError):
        error_row("succeeded", "no")


def test_tracebacks_reduce_to_the_exception_line():
    text = 'Traceback (most recent call last):\n  File "p.py", line 3\n    x()\nValueError: bad seed\n'
    assert one_line(text) == "ValueError: bad seed"


# --- assemble ----------------------------------------------------------------------------------


def test_assemble_keeps_frame_and_appends_columns_in_order():
    df = pd.DataFrame({"prompt": ["a", "b", "c"], "t": [0.1, 0.2, 0.3]}, index=[30, 10, 20])
    plan = plan_jobs(df, model="a/b")
    rows = [
        prediction_row(_record(output=["x", "y"]), latency_s=1.0),
        error_row("skipped_budget", "budget"),
        prediction_row(_record(metrics={"predict_time": 1.0, "output_token_count": 7})),
    ]
    res = assemble(df, plan, rows)
    assert list(res.columns) == ["prompt", "t", "model", *RESULT_COLUMNS, "output_token_count"]
    assert list(res.index) == [30, 10, 20]
    pd.testing.assert_frame_equal(res[["prompt", "t"]], df)
    assert list(res["model"]) == ["a/b"] * 3
    assert list(res["status"]) == ["succeeded", "skipped_budget", "succeeded"]
    assert res.loc[30, "output"] == "xy"
    assert res["latency_s"].dtype == "float64" and np.isnan(res.loc[10, "latency_s"])
    assert res["cached"].dtype == bool and not res["cached"].any()
    assert res["output"].dtype == object
    assert res["output_token_count"].tolist() == [pd.NA, pd.NA, 7]
    assert "prompt" in df.columns and "status" not in df.columns  # input untouched


def test_assemble_with_model_column_adds_no_model_column():
    df = pd.DataFrame({"model": ["a/b", "c/d"], "p": [1, 2]})
    res = assemble(df, plan_jobs(df), [error_row("error", "x")] * 2)
    assert list(res.columns) == ["model", "p", *RESULT_COLUMNS]


def test_rerunning_a_result_frame_overwrites_result_columns_in_place():
    df = pd.DataFrame({"p": ["a"]})
    first = assemble(df, plan_jobs(df, model="a/b"), [error_row("error", "first")])
    plan = plan_jobs(first, model="c/d")
    assert plan.jobs[0].input == {"p": "a"}
    second = assemble(first, plan, [prediction_row(_record(output="done"))])
    assert list(second.columns) == list(first.columns)
    assert second.loc[0, "model"] == "c/d" and second.loc[0, "status"] == "succeeded"


def test_assemble_keeps_list_outputs_whole_and_none_rows_empty():
    df = pd.DataFrame({"p": ["a", "b", "c"]})
    urls = ["https://x/1.png", "https://x/2.png"]
    res = assemble(df, plan_jobs(df, model="a/b"), [prediction_row(_record(output=urls)), None, None])
    assert res.loc[0, "output"] == urls
    assert res.loc[1, "status"] is None


def test_assemble_checks_row_count():
    df = pd.DataFrame({"p": ["a", "b"]})
    with pytest.raises(ValueError, match="1 result rows"):
        assemble(df, plan_jobs(df, model="a/b"), [None])


def test_assemble_100k_rows():  # speed is measured in bench/cache.py, not asserted here
    n = 100_000
    df = pd.DataFrame({"prompt": np.arange(n).astype(str)})
    plan = Plan([Job(i, "a/b", {}) for i in range(n)], None, True)
    row = prediction_row(_record(metrics={"predict_time": 1.0, "tokens_per_second": 3.0}))
    rows = [dict(row, latency_s=float(i)) for i in range(n)]
    res = assemble(df, plan, rows)
    assert len(res) == n and res["latency_s"].iloc[-1] == n - 1
    assert res["tokens_per_second"].dtype == "float64"


def test_whole_number_floats_from_a_column_with_gaps_are_sent_as_ints():
    from replibatch._table.schema import shape_input

    df = pd.DataFrame({"prompt": ["a", "b", "c"], "max_tokens": [24, None, 8]})
    assert df["max_tokens"].dtype == float  # what pandas does to an int column with a gap
    plan = plan_jobs(df, model="o/m")
    # planning keeps floats; what is sent (shape_input, without a schema) has ints
    sent = [shape_input(job.input, None)[0].get("max_tokens") for job in plan.jobs]
    assert sent == [24, None, 8] and all(type(v) is int for v in sent if v is not None)
    assert plan_jobs(pd.DataFrame({"t": [0.5]}), model="o/m").jobs[0].input == {"t": 0.5}


def test_a_result_frame_can_be_planned_again_without_its_result_columns_as_inputs():
    res = pd.DataFrame({"prompt": ["a"], "model": ["o/m"], "output": ["x"], "status": ["succeeded"],
                        "latency_s": [1.0], "submitted_at": [1.0e9], "completed_at": [1.0e9 + 1],
                        "output_token_count": [3]})
    job = plan_jobs(res).jobs[0]
    assert job.input == {"prompt": "a"}
