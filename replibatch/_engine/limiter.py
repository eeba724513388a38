"""The adaptive limiter: paces creates (and reads) at the rate the server really allows.

Nothing here sleeps or polls: callers ask how long to wait (`AdaptiveRateLimiter.reserve`) and
do the waiting themselves. The bucket arithmetic is `replibatch._engine.bucket`, the parsing of
retry hints and ``ratelimit-*`` headers `replibatch._engine.ratehints`, the estimate of the
server's bucket `replibatch._engine.ratelearn`; all three are re-exported here.

`AdaptiveRateLimiter` paces prediction creates (and, through `read_limiter`, reads) at the rate
the server really allows: it spreads sends evenly (no second-sized client burst), learns the
server's rate and burst from the send times of what it accepted and refused
(`replibatch._engine.ratelearn`), pauses once per throttle episode for the time the server names
(`retry_after_seconds` reads a Retry-After header, a ``retry_after`` body field or "resets in
~30s"), and probes upward again after a quiet spell. With no explicit rate, the ceiling also
follows the capacity advertised in ``ratelimit-remaining`` when present. An explicit rate is a
hard ceiling.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from replibatch._engine.bucket import Clock, TokenBucket
from replibatch._engine.ratehints import header, number, retry_after_seconds
from replibatch._engine.ratelearn import BucketEstimate, ThrottleLearner

__all__ = [
    "DEFAULT_CREATE_RATE",
    "DEFAULT_READ_RATE",
    "AdaptiveRateLimiter",
    "Clock",
    "Reservation",
    "TokenBucket",
    "poll_interval",
    "read_limiter",
    "retry_after_seconds",
]

_QUIET_CAP = 600.0  # seconds: the longest wait between upward probes
_BURST_CAP = 5.0  # client burst before the server's is known (a told rate may be far too high)
_LAGGED = 0.5  # seconds from send to a 429 beyond which its timing is not evidence
_BUNCHED_STEP = 0.9  # a refusal long after the bucket was full: lag bunched sends, step down

DEFAULT_CREATE_RATE = 600.0
"""Replicate's create-prediction limit per minute (the default ceiling when none is given)."""
DEFAULT_READ_RATE = 3000.0
"""Replicate's limit per minute for every other endpoint (polling included)."""

_POLL_FIRST = 0.5
_POLL_GROWTH = 1.5
_POLL_CAP = 5.0

def poll_interval(attempt: int) -> float:
    """Seconds to wait before poll number `attempt` (0-based) of one prediction.

    0.5 s, then x1.5 per attempt, capped at 5 s: quick answers for fast models, and at most
    one poll per 5 s per prediction for slow ones (well inside the 3000/min read limit for a few
    hundred predictions in flight). Raises ValueError for a negative attempt.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt!r}")
    return min(_POLL_CAP, _POLL_FIRST * _POLL_GROWTH ** min(attempt, 64))


class Reservation:
    """One caller's place in the create queue; ask `wait()` until it returns 0, then send.

    If a pause began after the place was taken (a 429 elsewhere), the place is void and `wait()`
    queues the caller again behind the pause, in the order callers come back.
    """

    __slots__ = ("_due", "_epoch", "_limiter")

    def __init__(self, limiter: AdaptiveRateLimiter) -> None:
        self._limiter = limiter
        self._epoch = limiter._epoch
        self._due = limiter._clock() + limiter._bucket.reserve()

    def wait(self) -> float:
        """Seconds still to wait before sending (0.0: go now)."""
        limiter = self._limiter
        now = limiter._clock()
        if self._epoch != limiter._epoch:
            self._epoch = limiter._epoch
            self._due = now + limiter._bucket.reserve()
        return max(0.0, self._due - now)


class AdaptiveRateLimiter:
    """Paces requests at the rate the server really allows, learned from its answers.

    `rate_per_minute`: an explicit hard ceiling, or None to start at `default_rate` and follow
    the capacity the server advertises (see `observe`). `burst`: fixed client-side burst, or
    None for a tenth of a second's worth of the current rate (1 to 5, at most half the server's
    burst once a throttle showed it): sends are spread nearly evenly, so a server whose burst is
    smaller than a second's worth is not overrun at every refill.

    On a 429 that begins a throttle episode, every caller pauses once for the server's hint
    (or an exponential backoff without one) and the rate is re-estimated from the send times of
    what was accepted and refused (`ratelearn.ThrottleLearner`): the refill count since the
    bucket was last full, the accepts between refusals of the same episode, or for a burst of
    one the retry hint. Without evidence the rate is multiplied by `decrease_factor`. 429s for
    requests sent before the episode's pause belong to it: they refine the estimate and may
    lengthen the pause, never pause again. After `quiet_seconds` without a 429 the rate probes
    upward by `recovery_fraction` per second, up to the ceiling (accounts change tier); each
    further episode doubles that quiet time (to 10 minutes), so a rate that is right is not
    probed into a pause every few seconds.
    Raises ValueError for a rate, burst or tuning value out of range.
    """

    def __init__(
        self,
        rate_per_minute: float | None = None,
        *,
        burst: float | None = None,
        clock: Clock = time.monotonic,
        default_rate: float = DEFAULT_CREATE_RATE,
        decrease_factor: float = 0.5,
        recovery_fraction: float = 0.05,
        min_rate: float = 1.0,
        backoff_base: float = 2.0,
        backoff_cap: float = 60.0,
        margin: float = 0.97,
        quiet_seconds: float = 10.0,
    ) -> None:
        ceiling = default_rate if rate_per_minute is None else rate_per_minute
        if not ceiling > 0 or not math.isfinite(ceiling):
            raise ValueError(f"rate_per_minute must be a positive number, got {ceiling!r}")
        if burst is not None and not burst > 0:
            raise ValueError(f"burst must be > 0, got {burst!r}")
        if not 0 < decrease_factor < 1:
            raise ValueError(f"decrease_factor must be in (0, 1), got {decrease_factor!r}")
        if not 0 < recovery_fraction <= 1:
            raise ValueError(f"recovery_fraction must be in (0, 1], got {recovery_fraction!r}")
        if not 0 < margin <= 1:
            raise ValueError(f"margin must be in (0, 1], got {margin!r}")
        if not 0 < min_rate <= ceiling:
            raise ValueError(f"min_rate must be in (0, {ceiling}], got {min_rate!r}")
        self._clock = clock
        self._learns_ceiling = rate_per_minute is None
        self._ceiling = float(ceiling)
        # Paced a little under the ceiling: at exactly the server's rate its bucket never
        # refills after a bunch of sends (event-loop or server lag), and the next bunch is a 429.
        self._rate = float(ceiling) * margin
        self._fixed_burst = None if burst is None else float(burst)
        self._decrease = decrease_factor
        self._recovery = recovery_fraction
        self._margin = margin
        self._quiet_now = quiet_seconds
        self._min_rate = min(float(min_rate), self._ceiling)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._throttle_streak = 0
        self._paused_until = -math.inf
        now = clock()
        self._learner = ThrottleLearner(now)
        self._episode_began = -math.inf  # when the current episode's pause started
        self._episode_floor = -math.inf  # sends before this belong to an older episode
        self._episode_rate = self._rate  # the rate that was refused
        self._last_throttle = -math.inf
        self._last_raise = -math.inf
        self._first_episode = math.inf
        self._epoch = 0
        self._bucket = TokenBucket(self._rate, self._burst_for(self._rate), clock=clock)
        self.episodes = 0
        """Throttle episodes so far (each paused once)."""
        self.refusals = 0
        """429s seen so far."""
        self.refusals_after_first = 0
        """429s for requests sent after the first episode began (what the learning should keep
        rare: issue 11 asks for at most 5 % of creates)."""
        self.estimate: BucketEstimate | None = None
        """The last estimate of the server's bucket (None before any throttle)."""

    @property
    def rate_per_minute(self) -> float:
        """The rate creates are paced at now."""
        return self._rate

    @property
    def ceiling_per_minute(self) -> float:
        """The most the rate may reach: the explicit rate, or the capacity learned so far."""
        return self._ceiling

    @property
    def learns_ceiling(self) -> bool:
        """True when no explicit rate was given and the ceiling follows the server."""
        return self._learns_ceiling

    def reserve(self) -> Reservation:
        """Take a place in the queue (fair: first come, first served)."""
        return Reservation(self)

    def delay(self) -> float:
        """Take a place and return the seconds to wait before sending.

        Unlike `reserve`, the answer does not follow a pause that starts while the caller waits;
        callers that wait long should use `reserve()` and ask `Reservation.wait()` again.
        """
        return Reservation(self).wait()

    def pause_remaining(self) -> float:
        """Seconds left in the current pause (0.0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def on_throttled(self, retry_after: float | None = None, *, sent_at: float | None = None) -> float:
        """The server answered 429 to a request sent at `sent_at` (default: now); return the
        seconds left to pause.

        A refusal of a request sent after the current episode began starts a new episode: one
        pause of `retry_after` seconds (or a backoff: `backoff_base` doubling per consecutive
        episode, capped at `backoff_cap`) and a new rate estimate, never above the refused
        rate. A refusal of a request sent before the episode's pause belongs to that episode.
        """
        now = self._clock()
        sent = now if sent_at is None else sent_at
        self.refusals += 1
        if self.episodes and sent > self._first_episode:
            self.refusals_after_first += 1
        if retry_after is None or not math.isfinite(retry_after) or retry_after < 0:
            pause = min(self._backoff_cap, self._backoff_base * 2.0**min(self._throttle_streak, 32))
            hint = None
        else:
            pause = hint = float(retry_after)
        # A request sent while paused was let through by a place given out before the pause
        # (a busy event loop answers the 429 after others already decided to send): the same
        # episode, not new evidence. Counted as new, each halved the rate again and a 20/s
        # server was learned as ~3/min (test_429_storm hung under load).
        if sent <= self._episode_began or sent < self._paused_until:
            if sent > self._episode_floor and now - sent <= _LAGGED:
                self._adopt(self._learner.refused_in_episode(sent), self._episode_rate)
            # Its hint, counted from now, names about the same end: only a clearly longer one
            # lengthens the pause (each re-plan would wake every waiting caller).
            if now + pause > self._paused_until + 0.5 * pause:
                self._pause(now, pause)
                self._learner.refilled(self._paused_until)
            return max(0.0, self._paused_until - now)
        self._throttle_streak += 1
        self.episodes += 1
        if self.episodes == 1:
            self._first_episode = now
        if self._last_throttle > -math.inf:
            # Each episode after the first means a probe (or a guess) overshot: probe more rarely.
            self._quiet_now = min(_QUIET_CAP, self._quiet_now * 2.0)
        self._episode_rate = self._rate
        self._episode_floor = self._episode_began  # the previous episode's sends are stale
        self._episode_began = now
        self._last_throttle = now
        estimate = self._learner.new_episode(sent, hint)
        if now - sent > _LAGGED:
            # A 429 is answered at once by a server keeping up: one this late means requests
            # wait in a queue (ours or the server's), so when it decided is not when we sent,
            # and the send times say nothing reliable about its bucket.
            self._learner.forget()
            estimate = BucketEstimate(None, estimate.burst, "bunched")
        refused = estimate.rate_per_second is not None and (
            estimate.rate_per_second * 60.0 * (1.0 if estimate.bound else self._margin)
            >= self._rate
        )
        if refused:
            # The points say the server allows what it just refused: they describe an older
            # limit. Forget them and back off as if nothing were known.
            self._learner.forget()
            estimate = BucketEstimate(None, estimate.burst, "contradicted")
        if estimate.basis == "bunched":
            self._rate = max(self._min_rate, self._rate * _BUNCHED_STEP)
            self._bucket.set_rate(self._rate, self._burst_for(self._rate))
        elif not self._adopt(estimate, self._rate):
            # No rate yet: back off, but (knowing the burst) not so far that the next episode
            # saturates too quickly to measure: ~10 bursts a second leaves a tenth of a second.
            guess = self._rate * self._decrease * self._margin
            if estimate.burst is not None and estimate.burst > 1.0:
                guess = min(guess, max(self._min_rate, 600.0 * estimate.burst))
            self._rate = max(self._min_rate, guess)
        self._pause(now, pause)
        self._learner.refilled(self._paused_until)
        return pause

    def _adopt(self, estimate: BucketEstimate, cap: float) -> bool:
        """Take an estimated rate (with the safety margin), at most `cap`; False if it has none."""
        self.estimate = estimate
        if estimate.rate_per_second is None:
            return False
        margin = 1.0 if estimate.bound else self._margin
        rate = min(cap, self._ceiling, estimate.rate_per_second * 60.0 * margin)
        rate = max(self._min_rate, rate)
        if rate != self._rate:
            self._rate = rate
            self._bucket.set_rate(rate, self._burst_for(rate))
        return True

    def on_success(self, *, sent_at: float | None = None) -> None:
        """A request sent at `sent_at` (default: now) went through.

        Feeds the estimator; after `quiet_seconds` without a 429 (and outside a pause) the rate
        probes upward by `recovery_fraction`, at most once a second, up to the ceiling.
        """
        now = self._clock()
        self._learner.accepted(now if sent_at is None else sent_at)
        if now < self._paused_until:
            return
        self._throttle_streak = 0
        if (
            self._rate < self._ceiling * self._margin
            and now - self._last_throttle >= self._quiet_now
            and now - self._last_raise >= 1.0
        ):
            self._last_raise = now
            top = self._ceiling * self._margin
            self._set_rate(min(top, max(self._rate, self._rate * (1.0 + self._recovery))))
            self._requeue()  # places spaced for the lower rate would keep it for their queue

    def on_sent(self, sent_at: float | None = None) -> None:
        """A request is being sent now (or at `sent_at`): feeds the estimator, which counts
        a request not yet answered as accepted."""
        self._learner.sent(self._clock() if sent_at is None else sent_at)

    def on_passed(self, *, sent_at: float | None = None) -> None:
        """A request got past the server's limiter but failed otherwise (a 5xx): it used a
        token, so it counts as accepted for the estimate, without any recovery."""
        self._learner.accepted(self._clock() if sent_at is None else sent_at)

    def observe(self, headers: Mapping[str, Any] | None) -> None:
        """Read ``ratelimit-remaining`` from a response to the requests this limiter paces
        (only those: reads and creates have separate limits).

        With no explicit rate, remaining + 1 is a lower bound of the per-minute capacity when
        the bucket is a minute's worth (as Replicate's is: 599 left after one create): the
        ceiling rises to the highest seen, and so does the rate unless it was throttled. A
        "0 remaining" is not a throttle: at exactly the server's rate the bucket is always near
        empty, so pausing on it would waste a reset per refill. Malformed or missing headers
        are ignored.
        """
        remaining = number(header(headers, "ratelimit-remaining"))
        if remaining is None:
            return
        if self._learns_ceiling and remaining + 1 > self._ceiling:
            at_ceiling = self._rate >= self._ceiling * self._margin
            self._ceiling = remaining + 1
            if at_ceiling:
                self._set_rate(self._ceiling * self._margin)
                self._requeue()

    def _burst_for(self, rate: float) -> float:
        if self._fixed_burst is not None:
            return self._fixed_burst
        # A tenth of a second's worth, and never more than half the server's burst once seen:
        # small enough for a server with a small burst, large enough that a busy event loop
        # does not turn every late wake-up into lost pace (measured: one token made 1,000 rows
        # at 5,820/min take 40 s on a loaded machine, a tenth of a second's worth 25 s). Capped at 5
        # until the server's burst is known.
        burst = max(1.0, min(_BURST_CAP, rate / 600.0))
        seen = self._learner.burst
        return burst if seen is None else max(1.0, min(burst, seen / 2.0))

    def _set_rate(self, rate: float) -> None:
        self._rate = rate
        self._bucket.set_rate(rate, self._burst_for(rate))

    @property
    def epoch(self) -> int:
        """Changes whenever outstanding places were voided (a pause, or a learned higher rate):
        a caller sleeping on an old `Reservation.wait` should wake and ask again."""
        return self._epoch

    def _requeue(self) -> None:
        # Places taken at the old, lower rate were spaced for it: void them so their holders
        # re-queue at the new rate instead of sleeping out the old schedule.
        self._epoch += 1
        self._bucket = TokenBucket(self._rate, self._burst_for(self._rate), clock=self._clock)

    def _pause(self, now: float, seconds: float) -> None:
        # A fresh, empty bucket voids every outstanding place (their holders re-queue through
        # Reservation.wait) and makes the first new place due exactly when the pause ends.
        self._paused_until = now + seconds
        self._epoch += 1
        self._bucket = TokenBucket(self._rate, self._burst_for(self._rate), clock=self._clock)
        self._bucket.drain(seconds - 60.0 / self._rate)


def read_limiter(
    rate_per_minute: float | None = None, *, clock: Clock = time.monotonic
) -> AdaptiveRateLimiter:
    """An AdaptiveRateLimiter for reads (polls, cancels, lists): 3000/min unless told otherwise."""
    return AdaptiveRateLimiter(rate_per_minute, clock=clock, default_rate=DEFAULT_READ_RATE, margin=1.0)
