"""The engine's time: one object for monotonic time, wall time and waiting.

Every delay the engine computes (retry backoff, pauses before a create, deadlines, lease polls,
the timeline's wall-clock stamps) goes through a `Clock`, so tests hand the engine a clock that
skips its waits (`arun`'s private `_arun_with`) instead of sleeping or patching module globals.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ["BACKOFF_CAP_S", "BACKOFF_FIRST_S", "SYSTEM_CLOCK", "Clock", "SystemClock", "backoff_delay"]

BACKOFF_FIRST_S = 0.25
BACKOFF_CAP_S = 8.0


class Clock(Protocol):
    """What the engine asks of time. ``monotonic`` measures intervals and deadlines, ``wall``
    stamps rows (epoch seconds) and dates create attempts for reconcile sweeps."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def wait(self, event: anyio.Event, timeout: float) -> None:
        """Return when `event` is set or `timeout` seconds have passed, whichever is first."""
        ...


class SystemClock:
    """The real clock: `time.monotonic`, `time.time` and the event loop's sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def wait(self, event: anyio.Event, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await event.wait()


SYSTEM_CLOCK = SystemClock()


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...) after a transient failure:
    0.25 s doubling up to 8 s."""
    return min(BACKOFF_FIRST_S * 2 ** (attempt - 1), BACKOFF_CAP_S)
