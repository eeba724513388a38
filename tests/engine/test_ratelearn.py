"""The limiter learning a server's real limit: a token-bucket server and clients on one fake clock.

A small discrete-event loop (no sockets, no sleeps): `concurrency` callers take places in the
limiter, send when it says, and the server's bucket (the simulator's own `TokenBucket`) answers
after `rtt`; a refusal carries the hint the simulator and Replicate give ("resets in ~Ns",
whole seconds rounded up).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field

import pytest

from replibatch._engine.limiter import AdaptiveRateLimiter, TokenBucket
from replibatch._engine.ratelearn import ThrottleLearner


@dataclass
class Outcome:
    wall: float
    throttled: int
    pauses: int
    rate: float
    sends: list[float] = field(default_factory=list)
    refusals: list[float] = field(default_factory=list)


def play(server_rate, server_burst, *, told=None, rows=1000, rtt=0.005, latency=0.5,
         concurrency=128, change_at=None, new_rate=None, new_burst=None):
    now = [0.0]

    def clock() -> float:
        return now[0]

    limiter = AdaptiveRateLimiter(told, clock=clock)
    server = TokenBucket(server_rate, server_burst, clock=clock)
    events: list = []
    seq = [0]
    out = Outcome(0.0, 0, 0, 0.0)

    def push(t, kind, data=None):
        seq[0] += 1
        heapq.heappush(events, (t, seq[0], kind, data))

    for _ in range(min(concurrency, rows)):
        push(0.0, "want")
    left = rows
    changed = False
    while events:
        t, _, kind, data = heapq.heappop(events)
        now[0] = t
        if change_at is not None and not changed and t >= change_at:
            changed = True
            server = TokenBucket(new_rate, new_burst, clock=clock)
        if kind == "want":
            place = limiter.reserve()
            push(t + place.wait(), "try", place)
        elif kind == "try":
            wait = data.wait()
            if wait > 0:
                push(t + wait, "try", data)
                continue
            out.sends.append(t)
            limiter.on_sent(t)
            accepted = server.try_take()
            hint = max(1, math.ceil(server.seconds_until(1.0)))
            push(t + rtt, "ok" if accepted else "429", (t, hint))
        elif kind == "ok":
            limiter.on_success(sent_at=data[0])
            push(t + latency, "done")
        elif kind == "429":
            out.throttled += 1
            out.refusals.append(data[0])
            limiter.on_throttled(data[1], sent_at=data[0])
            out.pauses = limiter.episodes
            push(t, "want")
        elif kind == "done":
            left -= 1
            if left >= concurrency:
                push(t, "want")
    out.wall, out.rate = now[0], limiter.rate_per_minute
    return out


def ideal(rows, rate_per_minute, latency=0.5):
    return rows / (rate_per_minute / 60.0) + latency


def test_told_the_right_rate_with_a_small_server_burst_never_throttles():
    # Issue 11: a one-second client burst made a 20-request server burst throttle every refill.
    out = play(6000, 20, told=6000)
    assert out.throttled == 0
    assert out.wall / ideal(1000, 6000) < 1.04  # paced 3 % under the ceiling


@pytest.mark.parametrize("rtt", [0.002, 0.005, 0.03])
def test_told_ten_times_the_real_rate_settles_within_seconds(rtt):
    out = play(6000, 20, told=60_000, rtt=rtt)
    assert 0.9 * 6000 <= out.rate <= 6000
    assert out.wall / ideal(1000, 6000) < 1.2
    late = [s for s in out.refusals if s > 3.0]  # after the first seconds: none
    assert late == []
    assert out.pauses <= 3  # one per episode, not one per refused request
    assert out.throttled < 50


def test_low_credit_account_burst_of_one_is_learned_from_the_retry_hint():
    out = play(60, 1, told=None, rows=30)  # default start: 600/min, ten times too fast
    assert out.throttled == 1 and out.pauses == 1
    assert out.wall / ideal(30, 60) < 1.10
    gaps = [b - a for a, b in itertools.pairwise(out.sends[2:])]
    assert min(gaps) >= 1.0  # never faster than the server refills


def test_six_a_minute_burst_one():
    out = play(6, 1, told=None, rows=6)
    assert out.throttled == 1
    assert out.wall <= 5 * 10.0 * 1.05 + 1


def test_a_lower_limit_mid_run_is_learned_and_a_higher_one_recovered():
    down = play(6000, 20, told=6000, rows=3000, change_at=5.0, new_rate=2000, new_burst=20)
    assert 0.5 * 2000 <= down.rate <= 2000
    assert down.pauses <= 6 and down.throttled <= 12
    # the account moves up a tier: the limiter probes upward after a quiet spell
    up = play(60, 1, told=None, rows=300, change_at=20.0, new_rate=600, new_burst=5)
    assert up.rate >= 300
    assert up.wall < 300 / 2


def test_explicit_rate_stays_a_hard_ceiling():
    out = play(60_000, 1000, told=3000, rows=500)
    assert out.rate == 3000 * 0.97 and out.throttled == 0
    window = [s for s in out.sends if s < 60]
    assert len(window) <= 3000 + 1


def test_learner_counts_refills_between_full_and_empty():
    learner = ThrottleLearner(0.0)
    for i in range(25):  # a burst of 20, then 100/s while sent at 1,000/s
        learner.accepted(i * 0.001 if i < 20 else 0.02 + (i - 19) * 0.01)
    first = learner.new_episode(0.021, 1.0)
    assert first.rate_per_second is None and first.burst == pytest.approx(20)
    learner.refilled(1.0)
    for i in range(40):
        learner.accepted(1.0 + i * 0.005)  # 200/s sent: 20 burst + 100/s refill until 1.2
    estimate = learner.new_episode(1.2, 1.0)
    assert estimate.basis == "refill count"
    assert estimate.rate_per_second == pytest.approx(100, rel=0.15)


def test_learner_without_evidence_says_so():
    learner = ThrottleLearner(0.0)
    assert learner.new_episode(0.5, None).rate_per_second is None
    assert learner.refused_in_episode(0.5001).rate_per_second is None
