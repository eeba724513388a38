"""Token-bucket arithmetic with an injected clock.

Nothing here sleeps or polls: callers ask how long to wait (`TokenBucket.reserve`) or whether a
token is available now (`TokenBucket.try_take`), and do the waiting themselves. The same bucket
serves the client (`replibatch._engine.limiter`, which waits) and the simulator (which answers
429).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "TokenBucket"]

Clock = Callable[[], float]


class TokenBucket:
    """A bucket of `burst` tokens refilled continuously at `rate_per_minute`.

    Raises ValueError when the rate or burst is not positive.
    """

    def __init__(
        self, rate_per_minute: float, burst: float | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute!r}")
        burst = max(1.0, rate_per_minute / 60.0) if burst is None else burst
        if burst <= 0:
            raise ValueError(f"burst must be > 0, got {burst!r}")
        self._clock = clock
        self._rate = rate_per_minute / 60.0
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = clock()

    @property
    def rate_per_minute(self) -> float:
        return self._rate * 60.0

    @property
    def burst(self) -> float:
        return self._burst

    def set_rate(self, rate_per_minute: float, burst: float | None = None) -> None:
        """Change the refill rate (and optionally the burst), keeping the tokens earned so far."""
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be > 0, got {rate_per_minute!r}")
        self._refill()
        self._rate = rate_per_minute / 60.0
        if burst is not None:
            self._burst = float(burst)
            self._tokens = min(self._tokens, self._burst)

    def _refill(self) -> float:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._updated = now
        return now

    def available(self) -> float:
        """Tokens available now (may be negative while reservations are outstanding)."""
        self._refill()
        return self._tokens

    def try_take(self, n: float = 1.0) -> bool:
        """Take `n` tokens if they are available now; never goes negative."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def seconds_until(self, n: float = 1.0) -> float:
        """Seconds until `n` tokens would be available, without taking them."""
        self._refill()
        missing = n - self._tokens
        return 0.0 if missing <= 0 else missing / self._rate

    def reserve(self, n: float = 1.0) -> float:
        """Take `n` tokens now, going into debt if needed; return the seconds to wait before use.

        Reservations queue up fairly: each caller's delay accounts for those reserved before it.
        """
        self._refill()
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def drain(self, seconds: float) -> None:
        """Empty the bucket and push the next token `seconds` into the future (server said wait)."""
        self._refill()
        self._tokens = min(self._tokens, -seconds * self._rate)
