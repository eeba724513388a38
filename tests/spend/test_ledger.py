"""The spend ledger: entries opened before a create, bound, finished; standing budgets that
hold across processes; never the token."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
import time

import pytest

from replibatch._spend.ledger import BudgetRefusal, SpendLedger, period_start, token_fingerprint
from replibatch.errors import ConfigurationError


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_entry_lifecycle_records_each_prediction_once(tmp_path):
    ledger = SpendLedger(tmp_path)
    entry = ledger.reserve(0.05, model="o/m", version="v1", token=token_fingerprint("r8_secret"))
    assert isinstance(entry, str)
    ledger.attach(entry, "p1")
    ledger.finish("p1", status="succeeded", predict_s=2.0, cost_usd=0.01, cost_basis="basis")
    # Re-attaching in a later run finishes the same prediction again: still one row.
    ledger.finish("p1", status="succeeded", predict_s=2.0, cost_usd=0.01, cost_basis="basis")
    [row] = ledger.entries()
    assert (row.prediction_id, row.status, row.cost_usd, row.reserved_usd) == ("p1", "succeeded", 0.01, 0)
    assert row.token == token_fingerprint("r8_secret") and row.token.startswith("tok-")


def test_a_second_entry_for_an_adopted_prediction_is_dropped(tmp_path):
    ledger = SpendLedger(tmp_path)
    first = ledger.reserve(0.0)
    ledger.attach(first, "p1")
    second = ledger.reserve(0.0)
    ledger.attach(second, "p1")  # a reconcile adopted the prediction the first entry made
    assert [e.entry_id for e in ledger.entries()] == [first]


def test_release_forgets_a_create_that_made_nothing(tmp_path):
    ledger = SpendLedger(tmp_path)
    ledger.release(ledger.reserve(1.0))
    assert ledger.entries() == []


def test_unknown_prediction_finished_is_added(tmp_path):
    ledger = SpendLedger(tmp_path)
    ledger.finish("old", status="failed", predict_s=math.nan, cost_usd=math.nan, cost_basis=None,
                  model="o/m")
    [row] = ledger.entries()
    assert row.prediction_id == "old" and row.cost_usd is None and row.predict_s is None


def test_daily_budget_counts_spent_and_open_worst_cases(tmp_path):
    clock = FakeClock(time.mktime((2026, 12, 1, 12, 0, 0, 0, 0, -1)))
    ledger = SpendLedger(tmp_path, clock=clock)
    ledger.set_budget("daily", 1.0)
    a = ledger.reserve(0.6)
    assert isinstance(a, str)
    refused = ledger.reserve(0.5)
    assert isinstance(refused, BudgetRefusal)
    assert refused.period == "daily" and refused.cap_usd == 1.0
    assert refused.left_usd == pytest.approx(0.4)
    assert "daily budget of $1.00" in str(refused) and "$0.4000 left" in str(refused)
    ledger.attach(a, "p1")
    ledger.finish("p1", status="succeeded", predict_s=1, cost_usd=0.2, cost_basis="x")
    assert isinstance(ledger.reserve(0.5), str)  # the worst case was not spent
    assert ledger.committed("daily") == pytest.approx(0.7)
    clock.now += 86400  # a new day
    assert ledger.committed("daily") == 0.0


def test_call_budget_is_the_lower_of_stored_and_given(tmp_path):
    ledger = SpendLedger(tmp_path)
    ledger.set_budget("daily", 10.0)
    assert isinstance(ledger.reserve(2.0, budgets={"daily": 1.0}), BudgetRefusal)
    assert isinstance(ledger.reserve(2.0, budgets={"daily": 20.0}), str)


def test_budget_validation(tmp_path):
    ledger = SpendLedger(tmp_path)
    with pytest.raises(ConfigurationError, match="budget period must be one of daily"):
        ledger.set_budget("hourly", 1.0)
    with pytest.raises(ConfigurationError, match="daily budget must be a number"):
        ledger.set_budget("daily", -1)
    ledger.set_budget("weekly", 3.0)
    ledger.set_budget("weekly", None)
    assert ledger.budgets() == {}


def test_period_starts_are_local_calendar_periods():
    wednesday_noon = time.mktime((2026, 12, 2, 12, 30, 0, 0, 0, -1))
    assert time.localtime(period_start("daily", wednesday_noon))[:6] == (2026, 12, 2, 0, 0, 0)
    assert time.localtime(period_start("weekly", wednesday_noon))[:6] == (2026, 11, 30, 0, 0, 0)
    assert time.localtime(period_start("monthly", wednesday_noon))[:6] == (2026, 12, 1, 0, 0, 0)


def _reserve_many(directory: str, count: int, queue) -> None:
    ledger = SpendLedger(directory)
    taken = sum(isinstance(ledger.reserve(0.1), str) for _ in range(count))
    queue.put(taken)


def test_two_processes_never_take_more_than_the_cap_together(tmp_path):
    SpendLedger(tmp_path).set_budget("daily", 1.0)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(str(tmp_path), 10, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    taken = queue.get(timeout=5) + queue.get(timeout=5)
    assert taken == 10  # 10 × $0.10 fit under $1.00 (to the cent), the other 10 were refused
    assert SpendLedger(tmp_path).committed("daily") == pytest.approx(1.0)


def test_reservations_of_dead_processes_are_released(tmp_path):
    ledger = SpendLedger(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_reserve_many, args=(str(tmp_path), 3, queue))
    proc.start()
    proc.join(60)
    assert queue.get(timeout=5) == 3
    mine = ledger.reserve(0.1)
    assert ledger.release_dead() == 3
    assert [e.entry_id for e in ledger.entries()] == [mine]


def test_the_token_never_reaches_the_file(tmp_path):
    ledger = SpendLedger(tmp_path)
    token = "r8_Zq9sEcretTokenValue0123456789"
    entry = ledger.reserve(0.1, token=token_fingerprint(token))
    ledger.attach(entry, "p1")
    ledger.finish("p1", status="succeeded", predict_s=1, cost_usd=0.1, cost_basis="b",
                  token=token_fingerprint(token))
    sqlite3.connect(tmp_path / "ledger.db").execute("PRAGMA wal_checkpoint(FULL)").close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("ledger.db"))
    assert token.encode() not in raw
    assert token_fingerprint(token).encode() in raw
