"""Where on the server's clock an unanswered create's prediction can lie.

A reconcile sweep must list every prediction an unanswered create could have made, and proving
that it made none means reading the whole window. Our clock and Replicate's differ by an unknown
offset ``d`` (server = ours + d), so without evidence the window is widened by `CLOCK_SKEW` on
the early side and left open on the late side: at 100 creates/s that is thousands of
predictions, a dozen pages per sweep.

Every create that WAS answered bounds ``d`` by causality alone, whatever its latency: the
server stamped ``created_at`` after we sent and before we read the reply, so
``created_at - received <= d <= created_at - sent``. The tightest bounds over the answered
creates give, for an unanswered one sent at ``s`` and given up on at ``f``, the window
``[s + d_low, f + d_high]`` on the server's clock. `MARGIN` on each side absorbs clock drift
between observations and timestamp rounding. Pure arithmetic; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["CLOCK_SKEW", "MARGIN", "ServerClock", "Window"]

# Without evidence, our clock and the server's may disagree by this much.
CLOCK_SKEW = timedelta(seconds=30)
# Widening of a learned window on each side: NTP slews clocks by milliseconds a second, and a
# run re-learns the bounds with every create, so a second is generous.
MARGIN = timedelta(seconds=1)


@dataclass(frozen=True)
class Window:
    """Server-clock bounds of a listing: ``start`` inclusive, ``end`` exclusive (None: open)."""

    start: datetime
    end: datetime | None


class ServerClock:
    """Bounds of the server's clock offset, learned from answered creates."""

    def __init__(self) -> None:
        self._low: timedelta | None = None  # d >= created - received
        self._high: timedelta | None = None  # d <= created - sent

    @property
    def known(self) -> bool:
        """True once an answered create bounded the offset (and the bounds are consistent)."""
        return self._low is not None and self._high is not None and self._low <= self._high

    def observe(self, sent: datetime, received: datetime, created: datetime | None) -> None:
        """A create sent at `sent` was answered at `received` (our clock) with a prediction
        stamped `created` (the server's). Ignores a missing stamp or a reply before the send."""
        if created is None or received < sent:
            return
        low, high = created - received, created - sent
        self._low = low if self._low is None else max(self._low, low)
        self._high = high if self._high is None else min(self._high, high)

    def window(self, earliest_sent: datetime, latest_given_up: datetime) -> Window:
        """Where predictions made by creates sent from `earliest_sent` and given up on by
        `latest_given_up` (our clock) can be stamped. Falls back to `CLOCK_SKEW` before an open
        end while nothing is known, or if the bounds contradict each other (the clock jumped)."""
        if not self.known or self._low is None or self._high is None:
            return Window(earliest_sent - CLOCK_SKEW, None)
        return Window(earliest_sent + self._low - MARGIN, latest_given_up + self._high + MARGIN)
