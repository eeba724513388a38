"""rb.spend / rb.set_budget / `replibatch spend`: the ledger as a frame and a table."""

from __future__ import annotations

import math
import time

import pytest

import replibatch as rb
from replibatch._cli.main import main
from replibatch._spend.spend import ledger_for, parse_since
from replibatch.errors import ConfigurationError


def _fill(ledger, rows):
    for pid, model, status, cost in rows:
        entry = ledger.reserve(1.0, model=model, token="tok-aaaa")
        ledger.attach(entry, pid)
        ledger.finish(pid, status=status, predict_s=2.0, cost_usd=cost, cost_basis="b")


def test_spend_by_model_sums_known_costs_and_counts_unknown():
    ledger = ledger_for(True)
    _fill(ledger, [("p1", "a/x", "succeeded", 0.10), ("p2", "a/x", "failed", 0.05),
                   ("p3", "b/y", "succeeded", math.nan)])
    table = rb.spend(by="model")
    assert list(table.index) == ["a/x", "b/y"]
    assert table.loc["a/x", "predictions"] == 2 and table.loc["a/x", "succeeded"] == 1
    assert table.loc["a/x", "cost_usd"] == pytest.approx(0.15)
    assert table.loc["b/y", "cost_unknown"] == 1 and table.loc["b/y", "cost_usd"] == 0
    rows = rb.spend()
    assert list(rows["prediction_id"]) == ["p1", "p2", "p3"]
    assert set(rows["token"]) == {"tok-aaaa"}


def test_spend_since_and_bad_arguments():
    now = time.time()
    assert parse_since("2h", now=now) == pytest.approx(now - 7200)
    assert parse_since(None) is None
    assert parse_since("2026-11-01") == pytest.approx(time.mktime((2026, 11, 1, 0, 0, 0, 0, 0, -1)))
    with pytest.raises(ConfigurationError, match="since must be a duration"):
        parse_since("last tuesday")
    with pytest.raises(ConfigurationError, match="by must be among"):
        rb.spend(by="colour")
    with pytest.raises(ConfigurationError, match="cache=False has none"):
        rb.spend(cache=False)


def test_set_budget_round_trip():
    assert rb.set_budget(daily=5.0) == {"daily": 5.0}
    assert rb.set_budget(weekly=20) == {"daily": 5.0, "weekly": 20.0}
    assert rb.set_budget(clear=True, monthly=50) == {"monthly": 50.0}
    with pytest.raises(ConfigurationError):
        rb.set_budget(daily=-1)


def test_cli_spend_prints_a_table_and_budgets(capsys, monkeypatch):
    _fill(ledger_for(True), [("p1", "a/x", "succeeded", 0.25), ("p2", "b/y", "succeeded", 1.5)])
    rb.set_budget(daily=10.0)
    monkeypatch.setenv("REPLIBATCH_WEEKLY_BUDGET", "3")
    assert main(["spend", "--by", "model"]) == 0
    out = capsys.readouterr().out
    assert "a/x" in out and "$0.2500" in out and "$1.50" in out
    assert "total: 2 created, $1.75" in out
    assert "daily budget: $10.00, $1.75 spent or in flight, $8.25 left" in out
    assert "weekly budget: $3.00" in out


def test_cli_spend_empty_and_bad_since(capsys):
    assert main(["spend"]) == 0
    assert "nothing spent" in capsys.readouterr().out
    assert main(["spend", "--since", "yesterday-ish"]) == 2
    assert "since must be a duration" in capsys.readouterr().err
