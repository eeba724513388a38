"""Reads (GET, cancel, list, upload, download): paced by the read bucket, retried when transient.

Replicate's read limit is per account (`DEFAULT_READ_RATE`); other processes on this machine
using the same account share it through a `SharedSchedule`. A 429 drains our bucket for the
Retry-After it names and is retried far more often than a failure (it did nothing); a transient
failure is retried `retries` times with backoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from replibatch._engine.clock import Clock, backoff_delay
from replibatch._engine.limiter import DEFAULT_READ_RATE, TokenBucket, poll_interval
from replibatch._engine.shared_limits import SharedSchedule
from replibatch.errors import RateLimitedError, TransientError

__all__ = ["THROTTLE_RETRIES", "Reads"]

THROTTLE_RETRIES = 60  # a 429 creates nothing, so it may be retried far more than a failure

T = TypeVar("T")


class Reads:
    """Runs read calls one at a time under the account's read pace."""

    def __init__(self, *, clock: Clock, retries: int, shared: SharedSchedule | None) -> None:
        self._clock = clock
        self._retries = retries
        self._shared = shared
        self.bucket = TokenBucket(DEFAULT_READ_RATE, burst=DEFAULT_READ_RATE / 60.0, clock=clock.monotonic)

    async def _slot(self) -> None:
        delay = self.bucket.reserve()
        if delay > 0:
            await self._clock.sleep(delay)
        if self._shared is not None:
            delay = self._shared.claim(DEFAULT_READ_RATE)
            if delay > 0:
                await self._clock.sleep(delay)

    async def __call__(self, call: Callable[[], Awaitable[T]]) -> T:
        """The reply of ``await call()``, paced and retried. Raises RateLimitedError after
        `THROTTLE_RETRIES` refusals in a row, TransientError after `retries` transient failures,
        and any other ReplicateAPIError at once."""
        attempt = 0
        while True:
            await self._slot()
            try:
                return await call()
            except RateLimitedError as exc:
                attempt += 1
                if attempt > THROTTLE_RETRIES:
                    raise
                self.bucket.drain(exc.retry_after or poll_interval(attempt))
            except TransientError:
                attempt += 1
                if attempt > self._retries:
                    raise
                await self._clock.sleep(backoff_delay(attempt))
