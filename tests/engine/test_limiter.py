import itertools
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from replibatch._engine.limiter import (
    DEFAULT_CREATE_RATE,
    DEFAULT_READ_RATE,
    AdaptiveRateLimiter,
    TokenBucket,
    poll_interval,
    read_limiter,
    retry_after_seconds,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def send_times(limiter, clock, count):
    """Absolute times at which `count` callers arriving now may send."""
    return [clock.now + limiter.delay() for _ in range(count)]


def max_in_window(times, window=60.0):
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


# --- pacing ------------------------------------------------------------------------------------


def test_default_rate_is_honoured_over_many_calls(clock):
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    assert limiter.rate_per_minute == DEFAULT_CREATE_RATE and limiter.learns_ceiling
    times = send_times(limiter, clock, 1800)
    assert times == sorted(times)  # first come, first served
    assert max_in_window(times) <= DEFAULT_CREATE_RATE + 1
    assert times[-1] - clock.now == pytest.approx(1799 * 60 / DEFAULT_CREATE_RATE)
    # sends are spread evenly: a server whose burst is smaller than a second's worth is not
    # overrun at every refill
    assert sum(t == clock.now for t in times) == 1
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(times)}
    assert gaps == {0.1}


def test_callers_arriving_over_time_keep_the_rate(clock):
    limiter = AdaptiveRateLimiter(120, clock=clock, margin=1.0)
    times = []
    for _ in range(600):
        times.append(clock.now + limiter.delay())
        clock.advance(0.05)  # callers arrive faster than 2/s
    assert max_in_window(times) <= 120 + 2
    gaps = [b - a for a, b in itertools.pairwise(times[5:])]
    assert min(gaps) == pytest.approx(0.5)


def test_small_rates_have_a_burst_of_one(clock):
    limiter = AdaptiveRateLimiter(6, clock=clock, margin=1.0)
    assert [limiter.delay() for _ in range(3)] == [0.0, pytest.approx(10.0), pytest.approx(20.0)]


# --- 429 ---------------------------------------------------------------------------------------


def test_throttle_pauses_exactly_the_given_time(clock):
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    send_times(limiter, clock, 5)
    clock.advance(3.0)
    assert limiter.on_throttled(30.0) == 30.0
    assert limiter.pause_remaining() == pytest.approx(30.0)
    assert limiter.delay() == pytest.approx(30.0)
    # after the pause: no burst, one request per interval at the lowered rate
    interval = 60.0 / limiter.rate_per_minute
    assert limiter.delay() == pytest.approx(30.0 + interval)
    clock.advance(30.0)
    assert limiter.pause_remaining() == 0.0


def test_tiny_pause_is_exact_too(clock):
    limiter = AdaptiveRateLimiter(6, clock=clock, margin=1.0)
    limiter.on_throttled(0.25)
    assert limiter.delay() == pytest.approx(0.25)


def test_places_taken_before_a_pause_queue_again_behind_it(clock):
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    waiting = [limiter.reserve() for _ in range(30)]
    first_due = [clock.now + r.wait() for r in waiting]
    clock.advance(0.5)
    limiter.on_throttled(10.0)
    assert waiting[0].wait() == pytest.approx(10.0)  # voided: behind the pause
    resumed = [clock.now + r.wait() for r in waiting]
    assert resumed == sorted(resumed) and resumed[0] == pytest.approx(clock.now + 10.0)
    assert all(after > before for after, before in zip(resumed, first_due, strict=False))
    assert max_in_window(resumed) <= limiter.rate_per_minute + 1
    # asking again does not queue again
    assert [clock.now + r.wait() for r in waiting] == resumed


def test_plain_delay_without_pause_is_unchanged_by_reservations(clock):
    limiter = AdaptiveRateLimiter(60, clock=clock, margin=1.0)
    reservation = limiter.reserve()
    assert reservation.wait() == 0.0
    assert limiter.delay() == pytest.approx(1.0)
    clock.advance(0.4)
    assert reservation.wait() == 0.0


def test_one_episode_pauses_once_and_lowers_the_rate_once(clock):
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    epoch = limiter.epoch
    assert limiter.on_throttled(10) == 10
    assert limiter.rate_per_minute == pytest.approx(300)  # no evidence yet: halved
    assert limiter.epoch == epoch + 1
    clock.advance(1)
    # refused requests that were sent before the pause began belong to the same episode
    assert limiter.on_throttled(5, sent_at=clock.now - 1.5) == pytest.approx(9)
    assert limiter.on_throttled(20, sent_at=clock.now - 1.2) == pytest.approx(20)  # lengthened
    assert limiter.rate_per_minute == pytest.approx(300)
    clock.advance(20)
    limiter.on_throttled(1)  # sent after the pause: a new episode
    assert limiter.rate_per_minute == pytest.approx(150)


def test_recovers_upward_after_a_quiet_spell_up_to_the_ceiling(clock):
    limiter = AdaptiveRateLimiter(clock=clock, quiet_seconds=10, recovery_fraction=0.5, margin=1.0)
    limiter.on_throttled(1)
    assert limiter.rate_per_minute == pytest.approx(300)
    curve = []
    for _ in range(30):
        clock.advance(1)
        limiter.on_success()
        curve.append(limiter.rate_per_minute)
    assert curve[:9] == [pytest.approx(300)] * 9  # quiet: not before 10 s without a 429
    assert curve[9] == pytest.approx(450) and curve[10] == pytest.approx(600)
    assert max(curve) == DEFAULT_CREATE_RATE  # never above the ceiling
    # a probe that overshoots makes the next probe wait twice as long
    limiter.on_throttled(1)
    clock.advance(1)
    rates = []
    for _ in range(25):
        clock.advance(1)
        limiter.on_success()
        rates.append(limiter.rate_per_minute)
    assert rates[17] == rates[0] and rates[-1] > rates[0]


def test_rate_never_falls_below_the_floor(clock):
    limiter = AdaptiveRateLimiter(10, clock=clock, min_rate=2, margin=1.0)
    for _ in range(20):
        limiter.on_throttled(0.0)
        clock.advance(0.001)
    assert limiter.rate_per_minute == 2


def test_backoff_without_hint_doubles_and_resets(clock):
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    pauses = []
    for _ in range(7):
        pauses.append(limiter.on_throttled(None))
        clock.advance(pauses[-1])
    assert pauses == [2, 4, 8, 16, 32, 60, 60]
    limiter.on_success()
    assert limiter.on_throttled(None) == 2


# --- learned and explicit ceilings -------------------------------------------------------------


def test_ceiling_learned_from_server_capacity(clock):
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    limiter.observe({"ratelimit-remaining": "599", "ratelimit-reset": "1"})
    assert limiter.ceiling_per_minute == 600
    limiter.observe(httpx.Headers({"RateLimit-Remaining": "5999", "RateLimit-Reset": "1"}))
    assert limiter.ceiling_per_minute == 6000 and limiter.rate_per_minute == 6000
    limiter.observe({"ratelimit-remaining": "12"})  # consumption, not a smaller account
    assert limiter.ceiling_per_minute == 6000
    clock.advance(60)
    times = send_times(limiter, clock, 12_000)
    assert max_in_window(times) <= 6000 + 100
    assert max_in_window(times) >= 6000


def test_learned_ceiling_while_throttled_does_not_lift_the_rate(clock):
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    limiter.on_throttled(1)
    clock.advance(1)
    limiter.observe({"ratelimit-remaining": ["5999"]})
    assert limiter.ceiling_per_minute == 6000 and limiter.rate_per_minute == pytest.approx(300)
    limiter.on_success()
    assert limiter.rate_per_minute == pytest.approx(300)


def test_explicit_rate_is_a_hard_ceiling(clock):
    limiter = AdaptiveRateLimiter(300, clock=clock, margin=1.0)
    assert not limiter.learns_ceiling
    limiter.observe({"ratelimit-remaining": "5999"})
    for _ in range(100):
        limiter.on_success()
    assert limiter.ceiling_per_minute == 300 and limiter.rate_per_minute == 300
    times = send_times(limiter, clock, 1500)
    assert max_in_window(times) <= 300 + 5


def test_nothing_remaining_is_not_a_throttle(clock):
    # At exactly the server's rate its bucket is always near empty: pausing on "0 remaining"
    # would lose a whole reset per refill (issue 11).
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    limiter.observe({"ratelimit-remaining": "0", "ratelimit-reset": "2"})
    assert limiter.pause_remaining() == 0.0
    assert limiter.delay() == 0.0
    assert limiter.rate_per_minute == DEFAULT_CREATE_RATE


@pytest.mark.parametrize("headers", [None, {}, {"ratelimit-remaining": "lots"}, {"x": "1"}])
def test_unusable_headers_change_nothing(clock, headers):
    limiter = AdaptiveRateLimiter(clock=clock, margin=1.0)
    limiter.observe(headers)
    assert (limiter.ceiling_per_minute, limiter.pause_remaining()) == (600, 0.0)


def test_read_limiter_defaults(clock):
    reads = read_limiter(clock=clock)
    assert reads.rate_per_minute == DEFAULT_READ_RATE and reads.learns_ceiling
    assert read_limiter(100, clock=clock).ceiling_per_minute == 100


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_per_minute": 0},
        {"rate_per_minute": -5},
        {"rate_per_minute": float("inf")},
        {"burst": 0},
        {"decrease_factor": 1.0},
        {"recovery_fraction": 0},
        {"min_rate": 0},
    ],
)
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError):
        AdaptiveRateLimiter(**kwargs, margin=1.0)


def test_token_bucket_is_still_what_the_simulator_expects(clock):
    bucket = TokenBucket(60, burst=2, clock=clock)
    assert bucket.try_take() and bucket.try_take() and not bucket.try_take()
    assert bucket.seconds_until() == pytest.approx(1.0)


# --- retry_after_seconds -----------------------------------------------------------------------

NOW = datetime(2024, 10, 4, 18, 7, 35, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "7"}, None, 7.0),
        ({"retry-after": "1.5"}, {"retry_after": 99}, 1.5),
        (httpx.Headers({"RETRY-AFTER": "3"}), None, 3.0),
        ({"Retry-After": ["4"]}, None, 4.0),
        ({"Retry-After": "Fri, 04 Oct 2024 18:08:05 GMT"}, None, 30.0),
        ({"Retry-After": "Fri, 04 Oct 2024 18:00:00 GMT"}, None, 0.0),
        ({"Retry-After": "soon"}, {"retry_after": 12}, 12.0),
        ({}, {"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429}, 30.0),
        ({}, {"detail": "Request was throttled. Your rate limit resets in ~1m.", "status": 429}, 60.0),
        ({}, {"detail": "Request was throttled. Expected available in 2 seconds."}, 2.0),
        ({}, {"detail": "resets in ~500ms"}, 0.5),
        ({}, {"retry_after": "5", "detail": "resets in ~30s"}, 5.0),
        ({}, '{"detail": "Your rate limit resets in ~10s.", "status": 429}', 10.0),
        ({}, b'{"retry_after": 8}', 8.0),
        ({}, "Request was throttled. Your rate limit resets in ~45s.", 45.0),
        (None, None, None),
        ({}, {"detail": "Request was throttled."}, None),
        ({}, {"retry_after": None, "detail": 5}, None),
        ({}, [1, 2], None),
        ({}, "<html>502 Bad Gateway</html>", None),
        ({"Retry-After": "-3"}, None, 0.0),
        ({}, {"retry_after": True}, None),
    ],
)
def test_retry_after_seconds(headers, body, expected):
    assert retry_after_seconds(headers, body, now=NOW) == expected


def test_retry_after_http_date_uses_current_time_by_default():
    soon = datetime.now(timezone.utc) + timedelta(seconds=120)
    header = soon.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 100 < retry_after_seconds({"Retry-After": header}, None) <= 120


# --- poll_interval -----------------------------------------------------------------------------


def test_poll_interval_grows_to_a_cap():
    intervals = [poll_interval(attempt) for attempt in range(12)]
    assert intervals[:3] == [0.5, 0.75, 1.125]
    assert intervals == sorted(intervals) and max(intervals) == 5.0
    assert poll_interval(10_000) == 5.0
    with pytest.raises(ValueError):
        poll_interval(-1)


def test_learning_a_higher_rate_voids_places_spaced_for_the_old_one():
    now = [0.0]
    limiter = AdaptiveRateLimiter(clock=lambda: now[0], margin=1.0)  # starts at 600/min, evenly spread
    places = [limiter.reserve() for _ in range(40)]
    assert places[-1].wait() == pytest.approx(3.9)  # 39 intervals of 0.1 s
    epoch = limiter.epoch
    limiter.observe({"ratelimit-remaining": "5999", "ratelimit-reset": "1"})
    assert limiter.epoch != epoch and limiter.rate_per_minute == 6000
    waits = [p.wait() for p in places]  # re-queued at 100/s
    assert max(waits) == pytest.approx(0.35)  # 39 places, a burst of 5 at 100/s


def test_paced_a_little_under_the_ceiling_by_default(clock):
    # At exactly the server's rate its bucket never refills after lag bunched some sends.
    limiter = AdaptiveRateLimiter(6000, clock=clock)
    assert limiter.ceiling_per_minute == 6000 and limiter.rate_per_minute == pytest.approx(5820)
    times = send_times(limiter, clock, 6000)
    assert max_in_window(times) <= 5820 + 10
