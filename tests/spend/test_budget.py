import math
import random
from collections import deque

import pytest

from replibatch._spend.budget import Budget
from replibatch.errors import ConfigurationError


def test_without_a_cap_everything_starts_and_spending_is_tracked():
    budget = Budget(None)
    reservations = [budget.try_start("m", None) for _ in range(50)]
    assert all(r is not None for r in reservations)
    for r in reservations:
        budget.finish(r, 0.25)
    assert budget.spent == 12.5
    assert budget.in_flight == 0


def test_reservations_stop_at_the_cap_exactly():
    budget = Budget(0.01)
    started = []
    while (r := budget.try_start("m", 0.001)) is not None:
        started.append(r)
    # 10 × $0.001 is exactly $0.01 (decimal sums), so the 10th fits and the 11th does not.
    assert len(started) == 10
    assert budget.in_flight_expected == 0.01
    assert budget.worth_waiting("m", 0.001)  # rows in flight may finish cheaper
    for r in started:
        budget.finish(r, 0.001)
    assert budget.spent == 0.01 and budget.in_flight_expected == 0
    assert budget.try_start("m", 0.001) is None
    assert not budget.worth_waiting("m", 0.001)
    reason = budget.skip_reason("m", 0.001)
    assert "max_cost $0.0100" in reason and "$0.0100 spent" in reason


def test_mean_of_finished_rows_replaces_the_prior():
    budget = Budget(1.0)
    first = budget.try_start("m", 0.5)
    assert first.expected_cost == 0.5
    budget.finish(first, 0.1)
    second = budget.try_start("m", 0.5)
    budget.finish(second, 0.3)
    assert budget.expected_cost("m", 0.5) == pytest.approx(0.2)
    assert budget.expected_cost("other", 0.5) == 0.5


def test_nan_actual_counts_the_estimate():
    budget = Budget(1.0)
    r = budget.try_start("m", 0.2)
    budget.finish(r, math.nan)
    assert budget.spent == 0.2
    assert budget.expected_cost("m", None) is None  # a guess does not become the model's mean


def test_unknown_cost_model_runs_one_probe_at_a_time_then_uses_its_figure():
    budget = Budget(0.05)
    probe = budget.try_start("m", None)
    assert probe is not None and probe.expected_cost is None
    assert budget.in_flight_expected == 0
    assert budget.try_start("m", None) is None
    assert budget.worth_waiting("m", None)
    # Another model with a known estimate is not held back by the probe.
    assert budget.try_start("other", 0.01) is not None
    budget.finish(probe, 0.02)
    follow_up = budget.try_start("m", None)
    assert follow_up is not None and follow_up.expected_cost == 0.02


def test_a_model_whose_cost_stays_unknown_is_refused_under_a_cap():
    budget = Budget(1.0)
    probe = budget.try_start("m", None)
    budget.finish(probe, math.nan)
    assert budget.unknown_cost_rows == 1
    assert budget.try_start("m", None) is None
    assert not budget.worth_waiting("m", None)
    assert "hardware=" in budget.skip_reason("m", None)


def test_release_spends_nothing_and_leaves_the_mean_alone():
    budget = Budget(0.01)
    r = budget.try_start("m", 0.01)
    assert budget.try_start("m", 0.01) is None
    budget.release(r)  # e.g. the row turned out to be cached: free
    assert budget.spent == 0 and budget.in_flight_expected == 0
    assert budget.expected_cost("m", None) is None
    assert budget.try_start("m", 0.01) is not None


def test_a_reservation_is_handed_back_once():
    budget = Budget(1.0)
    r = budget.try_start("m", 0.1)
    budget.finish(r, 0.1)
    with pytest.raises(ConfigurationError):
        budget.finish(r, 0.1)
    with pytest.raises(ConfigurationError):
        Budget(1.0).release(r)


@pytest.mark.parametrize("bad", [-1, math.nan, "5", True])
def test_invalid_cap_raises(bad):
    with pytest.raises(ConfigurationError):
        Budget(bad)


def test_zero_cap_starts_nothing_that_costs():
    budget = Budget(0)
    assert budget.try_start("m", 0.001) is None
    assert budget.try_start("m", None) is None
    assert not budget.worth_waiting("m", None)


def simulate(max_cost, costs, concurrency, prior, cached=frozenset()):
    """A runner in miniature: fill free slots in row order, finish the oldest in flight, wait
    while `worth_waiting`, skip otherwise. Cached rows never touch the budget."""
    budget = Budget(max_cost)
    pending = deque(range(len(costs)))
    in_flight: deque = deque()
    started, skipped = [], []
    while pending or in_flight:
        while pending and len(in_flight) < concurrency:
            row = pending[0]
            if row in cached:
                pending.popleft()
                continue
            reservation = budget.try_start("m", prior)
            if reservation is not None:
                pending.popleft()
                in_flight.append((row, reservation))
                started.append(row)
            elif budget.worth_waiting("m", prior):
                break
            else:
                skipped.append(pending.popleft())
        if in_flight:
            row, reservation = in_flight.popleft()
            budget.finish(reservation, costs[row])
    return budget, started, skipped


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("prior", [None, 0.001])
def test_the_cap_is_passed_by_at_most_one_in_flight_batch(seed, prior):
    rng = random.Random(seed)
    costs = [rng.uniform(0.0005, 0.004) for _ in range(300)]
    concurrency, max_cost = 8, 0.1
    budget, started, skipped = simulate(max_cost, costs, concurrency, prior)
    spent = sum(costs[row] for row in started)
    assert budget.spent == pytest.approx(spent)
    assert skipped, "the budget ran out, so rows were skipped"
    assert started == sorted(started) and set(started) | set(skipped) == set(range(300))
    assert spent <= max_cost + concurrency * max(costs)
    # ...and the budget was used, not abandoned early.
    assert spent >= max_cost - concurrency * max(costs)


def test_rows_after_exhaustion_are_all_skipped_and_cached_rows_are_free():
    costs = [0.01] * 20
    cached = frozenset(range(0, 20, 2))  # every other row comes from the cache
    budget, started, skipped = simulate(0.05, costs, 1, 0.01, cached)
    assert started == [1, 3, 5, 7, 9]
    assert skipped == [11, 13, 15, 17, 19]
    assert budget.spent == 0.05


def test_skip_reason_shows_small_amounts_as_plain_decimals():
    budget = Budget(0.00002)
    first = budget.try_start("m", 0.0000068)
    assert first is not None
    budget.finish(first, 0.0000068)
    while budget.try_start("m", 0.0000068) is not None:
        pass
    reason = budget.skip_reason("m", 0.0000068)
    assert "max_cost $0.000020" in reason and "$0.0000068 spent" in reason
    assert "e-0" not in reason
