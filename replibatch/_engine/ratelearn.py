"""Estimate a server's token bucket (sustained rate and burst) from what it accepted and refused.

Pure arithmetic on send times; nothing here reads a clock or sleeps. The limiter feeds it one
record per answered create (`accepted` / `refused`, stamped with the time the request was SENT,
since that is when the server's bucket was consulted) and asks for an estimate when a throttle
episode begins.

What a token bucket (rate r per second, burst b) lets us infer:

- A refused request means the bucket was empty when it arrived. From a moment the bucket is
  believed full (the start of a run, the end of a pause) to a refusal, what got through is the
  burst plus what refilled: ``accepted ~= b + r * span`` (within a token). Every refusal adds
  such a point, within an episode and across episodes; a line through them gives b and r.
  With points too alike to tell a slope, the accepts before the first refusal are the burst.
- For a burst of one token, every accept empties the bucket, so the next token comes exactly
  ``1/r`` after the last accept; the server's "retry after h" (rounded up to whole seconds by
  Replicate's "resets in ~Ns") bounds it: ``1/r <= refused_at + h - last_accept``.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

__all__ = ["BucketEstimate", "ThrottleLearner"]

_KEEP = 8192  # accepted send times remembered (a few seconds at 100/s, minutes at 600/min)
_MIN_TOKENS = 3  # fewer refilled tokens than this say too little about the rate
_MIN_SPAN = 0.02  # seconds; shorter spans are dominated by scheduling jitter
_LONG = 1.0  # seconds from full to a refusal beyond which we were not far above the rate
_HINT_WINDOW = 1.0  # seconds before a refusal in which accepts must fit the hint's rate


@dataclass(frozen=True)
class BucketEstimate:
    """What the server's bucket looks like, as far as the evidence goes.

    ``rate_per_second``: the refill rate, or None when nothing could be inferred. ``burst``:
    the bucket size seen at the first throttle (None before any). ``basis``: which inference
    gave the rate ("refill count", "between refusals", "retry hint"). ``bound``: True when
    the rate is a lower bound already (the retry hint's rounding errs on the slow side), so no
    safety margin is needed on top.
    """

    rate_per_second: float | None
    burst: float | None
    basis: str
    bound: bool = False


class ThrottleLearner:
    """Records accepted and refused sends and infers the server's rate and burst from them."""

    def __init__(self, start: float) -> None:
        self._accepted: list[float] = []
        self._full_at = start  # when the server's bucket is believed full (next episode's base)
        self._episode_base = start  # the full moment the current episode's sends started from
        self._burst: float | None = None
        self._points: list[tuple[float, int]] = []
        self._sent: list[float] = []
        self._refusals: list[float] = []  # (seconds since full, accepts) per refusal

    @property
    def burst(self) -> float | None:
        """The server's burst as measured at the first throttle (None before any)."""
        return self._burst

    def forget(self) -> None:
        """Drop the points (they contradict what the server does now); keep the burst."""
        self._points.clear()

    def sent(self, sent_at: float) -> None:
        """A request was sent at `sent_at`. Until its answer comes it counts as accepted: a
        server that lags answers late, and counting only the answers in would see too few."""
        bisect.insort(self._sent, sent_at)
        if len(self._sent) > _KEEP:
            del self._sent[: len(self._sent) - _KEEP]

    def accepted(self, sent_at: float) -> None:
        """A request sent at `sent_at` went through the server's limiter."""
        bisect.insort(self._accepted, sent_at)
        if len(self._accepted) > _KEEP:
            del self._accepted[: len(self._accepted) - _KEEP]

    def _refused(self, sent_at: float) -> None:
        bisect.insort(self._refusals, sent_at)
        if len(self._refusals) > _KEEP:
            del self._refusals[: len(self._refusals) - _KEEP]

    def refilled(self, at: float) -> None:
        """The bucket is believed full again at `at` (a pause of at least a refill ended)."""
        self._full_at = at

    def _count(self, start: float, end: float) -> int:
        """Sends after `start` and up to `end` (ties included: a burst leaves at one instant)
        that were not refused (those still unanswered included); without `sent` records, the
        accepted ones."""
        def between(times: list[float]) -> int:
            return bisect.bisect_right(times, end) - bisect.bisect_right(times, start)

        if not self._sent:
            return between(self._accepted)
        return max(between(self._accepted), between(self._sent) - between(self._refusals))

    def new_episode(self, refused_at: float, retry_after: float | None) -> BucketEstimate:
        """A request sent at `refused_at` was refused and begins a new throttle episode.

        Returns the best estimate the evidence allows; ``rate_per_second`` None means "no idea".
        """
        self._refused(refused_at)
        self._episode_base = self._full_at
        span = refused_at - self._full_at
        if span > _LONG:
            # Long after the bucket was last full: we were pacing at about a rate it accepts
            # and lag (ours or the server's) bunched some sends, or the limit changed. This is
            # no full-to-empty run, and what we managed to send says more about our CPU than
            # the server. Say so; the caller steps down gently, and if the limit did change
            # the next, short, episodes measure it afresh (the old points may not apply).
            self._points.clear()
            self._episode_base = math.inf  # nothing of this episode is a point
            return BucketEstimate(None, self._burst, "bunched")
        estimate = self._point(refused_at)
        one = self._burst is not None and self._burst <= 1.0
        if estimate.rate_per_second is None and one and retry_after is not None:
            return self._from_hint(refused_at, retry_after)
        return estimate

    def refused_in_episode(self, refused_at: float) -> BucketEstimate:
        """A request sent at `refused_at` was refused (in the current episode or opening one).

        Every refusal is a point (seconds since the bucket was full, accepts since then) on the
        line ``b + r * span`` while we send faster than r; a least-squares line through them
        gives the burst (intercept) and rate (slope). Until the points tell a slope apart from
        rounding, the accepts before the first refusal are taken as the burst.
        """
        self._refused(refused_at)
        return self._point(refused_at)

    def _point(self, refused_at: float) -> BucketEstimate:
        base = self._episode_base
        if base > refused_at:
            return BucketEstimate(None, self._burst, "limit changed")
        span = refused_at - base
        accepted = self._count(base - 1e-9, refused_at)
        self._points.append((span, accepted))
        if len(self._points) > _KEEP:
            del self._points[: len(self._points) - _KEEP]
        if self._burst is None:
            self._burst = float(max(1, self._points[0][1]))
        fit = _line(self._points)
        if fit is None:
            refilled = accepted - self._burst
            if len(self._points) == 1 and span >= _MIN_SPAN and refilled >= _MIN_TOKENS:
                # A fresh measurement with the burst known from before: what refilled over span.
                return BucketEstimate(refilled / span, self._burst, "refill count")
            return BucketEstimate(None, self._burst, "too little evidence")
        burst, rate = fit
        self._burst = max(1.0, burst)
        return BucketEstimate(rate, self._burst, "refill count")

    def _from_hint(self, refused_at: float, retry_after: float) -> BucketEstimate:
        index = bisect.bisect_left(self._accepted, refused_at)
        if index == 0:
            return BucketEstimate(None, self._burst, "no accept before the refusal")
        interval = refused_at + retry_after - self._accepted[index - 1]
        if interval <= 0:
            return BucketEstimate(None, self._burst, "hint in the past")
        rate = 1.0 / interval
        # A server of burst 1 refilling at `rate` accepts at most 1 + rate x window requests
        # in any window. More accepts just before this refusal mean the burst of 1 was a bad
        # fit and the hint is coarse: "1 s" is also what a 20/s server with a burst of 3 says
        # (whole seconds rounded up), and taking it as the rate collapsed such a run to ~58/min
        # (test_429_storm hung under load). The accepts then say more than the hint does.
        recent = index - bisect.bisect_left(self._accepted, refused_at - _HINT_WINDOW)
        if recent > 2.0 + rate * _HINT_WINDOW:
            return BucketEstimate(None, self._burst, "hint too coarse")
        return BucketEstimate(rate, self._burst, "retry hint", bound=True)


def _line(points: list[tuple[float, int]]) -> tuple[float, float] | None:
    """(intercept, slope) of the least-squares line through `points`, or None when the spans
    are too alike to tell a slope, or the slope is not a positive number of tokens a second."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if max(x for x, _ in points) - min(x for x, _ in points) < _MIN_SPAN:
        return None
    if max(y for _, y in points) - min(y for _, y in points) < _MIN_TOKENS:
        return None  # a token or two of difference is rounding, not a slope
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    if not slope > 0:
        return None
    return mean_y - slope * mean_x, slope
