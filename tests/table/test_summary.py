import math

import numpy as np
import pandas as pd
import pytest

from replibatch._table.summary import format_summary, format_usd, project, summarize
from replibatch.errors import ConfigurationError


@pytest.fixture
def result() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": list("abcdefgh"),
            "status": ["succeeded", "succeeded", "succeeded", "failed", "timeout",
                       "skipped_budget", "error", "succeeded"],
            "cached": [False, True, False, False, False, False, False, True],
            "cost_usd": [0.01, 0.02, 0.003, 0.001, np.nan, np.nan, np.nan, 0.005],
        },
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    )


def test_summarize_counts_and_costs(result):
    summary = summarize(result, 30.0)
    assert summary["rows"] == 8
    assert summary["succeeded"] == 4
    assert summary["failed"] == 4
    assert summary["by_status"] == {"failed": 1, "timeout": 1, "error": 1, "skipped_budget": 1}
    assert summary["cached"] == 2
    assert summary["cost_spent_usd"] == pytest.approx(0.01 + 0.003 + 0.001)
    assert summary["cost_saved_usd"] == pytest.approx(0.02 + 0.005)
    assert summary["cost_unknown"] == 1  # the timeout; skipped and error rows never ran
    assert summary["wall_s"] == 30.0
    assert summary["rows_per_minute"] == 16.0


def test_format_summary_line(result):
    line = format_summary(summarize(result, 30.0))
    assert line == (
        "8 rows: 4 succeeded, 1 failed, 1 timeout, 1 error, 1 skipped_budget, 2 cached · "
        "$0.0140 spent, $0.0250 saved by cache (cost unknown for 1 row) · 30.0 s · 16 rows/min"
    )


def test_format_summary_of_a_plain_run():
    frame = pd.DataFrame({"status": ["succeeded"] * 3, "cached": [False] * 3, "cost_usd": [0.5, 0.25, 0.25]})
    assert format_summary(summarize(frame, 125)) == (
        "3 rows: 3 succeeded · $1.0000 spent · 2m 05s · 1.4 rows/min"
    )


def test_summary_without_optional_columns_and_zero_wall_time():
    summary = summarize(pd.DataFrame({"status": ["succeeded", "canceled"]}), 0)
    assert summary["cached"] == 0 and summary["cost_spent_usd"] == 0
    assert math.isnan(summary["rows_per_minute"])
    assert "rows/min" not in format_summary(summary)


def test_summarize_rejects_bad_arguments(result):
    with pytest.raises(ConfigurationError):
        summarize(result.drop(columns="status"), 1)
    with pytest.raises(ConfigurationError):
        summarize(result, -1)


def test_format_usd():
    assert format_usd(0.0123) == "$0.0123"
    assert format_usd(0.004) == "$0.0040"
    assert format_usd(0.0000068) == "$0.0000068"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(0) == "$0"
    assert format_usd(math.nan) == "$?"


@pytest.fixture
def pilot() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": ["a", "a", "a", "b", "b", "c"],
            "cost_usd": [0.01, 0.02, 0.03, 0.5, 0.7, np.nan],
            "latency_s": [1.0, 2.0, 3.0, 10.0, 14.0, 5.0],
            "status": ["succeeded"] * 5 + ["failed"],
        }
    )


def test_project_per_model_cost_range_and_wall_time(pilot):
    frame = project(pilot, {"a": 600, "b": 20}, concurrency=10, rate_per_minute=120)
    a, b = frame.loc["a"], frame.loc["b"]
    assert (a["rows"], a["pilot_rows"]) == (600, 3)
    assert a["cost_mean_usd"] == pytest.approx(0.02)
    assert (a["cost_usd"], a["cost_low_usd"], a["cost_high_usd"]) == pytest.approx((12.0, 6.0, 18.0))
    # a: rate-bound: the first 2 creates go at once (a second's worth of burst), the other
    # 598 at 2 per s = 299 s > 600 × 2 s / 10 = 120 s; + 2 s for the last row.
    assert a["wall_s"] == pytest.approx(301.0)
    # b: concurrency-bound: 20 × 12 s / 10 = 24 s > 20 / 2 per s = 10 s; + 12 s.
    assert b["wall_s"] == pytest.approx(36.0)
    assert (b["cost_usd"], b["cost_low_usd"], b["cost_high_usd"]) == pytest.approx((12.0, 10.0, 14.0))


def test_project_total_shares_the_limits(pilot):
    frame = project(pilot, {"a": 600, "b": 20}, concurrency=10, rate_per_minute=120)
    total = frame.loc["total"]
    assert list(frame.index) == ["a", "b", "total"]
    assert total["rows"] == 620 and total["pilot_rows"] == 5
    costs = (total["cost_usd"], total["cost_low_usd"], total["cost_high_usd"])
    assert costs == pytest.approx((24.0, 16.0, 32.0))
    # (620 - 2 burst) rows / 2 per s = 309 s > (1200 + 240) s / 10 = 144 s; + the longest mean
    # latency 12 s.
    assert total["wall_s"] == pytest.approx(321.0)
    without_burst = project(pilot, {"a": 600, "b": 20}, concurrency=10, rate_per_minute=120, burst=0)
    assert without_burst.loc["total", "wall_s"] == pytest.approx(322.0)


def test_project_unknown_cost_makes_the_total_unknown(pilot):
    frame = project(pilot, {"a": 10, "c": 10}, concurrency=2, rate_per_minute=600)
    assert math.isnan(frame.loc["c", "cost_usd"])
    assert frame.loc["c", "wall_s"] == pytest.approx(10 * 5.0 / 2 + 5.0)
    assert math.isnan(frame.loc["total", "cost_usd"])


def test_project_model_without_pilot_rows_and_zero_rows(pilot):
    frame = project(pilot, {"a": 10, "zzz": 0}, concurrency=2, rate_per_minute=600)
    assert frame.loc["zzz", "wall_s"] == 0 and frame.loc["zzz", "pilot_rows"] == 0
    assert frame.loc["total", "cost_usd"] == pytest.approx(0.2)
    assert math.isnan(project(pilot, {"zzz": 5}, concurrency=1, rate_per_minute=60).loc["total", "cost_usd"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0, "rate_per_minute": 60},
        {"concurrency": 1, "rate_per_minute": 0},
        {"concurrency": 1.5, "rate_per_minute": 60},
    ],
)
def test_project_rejects_bad_limits(pilot, kwargs):
    with pytest.raises(ConfigurationError):
        project(pilot, {"a": 1}, **kwargs)


def test_project_rejects_bad_input(pilot):
    with pytest.raises(ConfigurationError):
        project(pilot.drop(columns="latency_s"), {"a": 1}, concurrency=1, rate_per_minute=60)
    with pytest.raises(ConfigurationError):
        project(pilot, {"a": -1}, concurrency=1, rate_per_minute=60)


def test_sub_second_run_shows_milliseconds_and_no_rate():
    frame = pd.DataFrame({"status": ["succeeded"] * 120, "cached": [True] * 120,
                          "cost_usd": [0.0001] * 120})
    line = format_summary(summarize(frame, 0.0553))
    assert line.endswith(" · 55 ms")
    assert "rows/min" not in line and "0.0 s" not in line
    assert format_summary(summarize(frame, 0.0004)).endswith(" · <1 ms")
    assert format_summary(summarize(frame, 0)).endswith(" · 0 s")
    assert format_summary(summarize(frame, 2.5)).endswith(" · 2.5 s · 2880 rows/min")


def test_format_usd_never_uses_scientific_notation():
    assert format_usd(7.73e-05) == "$0.000077"
    assert format_usd(0.000385) == "$0.00038"  # 2 significant digits below $0.001
    assert format_usd(0.00015) == "$0.00015"
    assert format_usd(1e-9) == "$0.0000000010"
    assert format_usd(-0.00005) == "-$0.000050"
    for value in (7.73e-05, 1e-9, 3.3e-12, 0.00099, 0.5, 12.0):
        assert "e" not in format_usd(value)
