"""The engine's waits go through its injected clock: retries back off without real sleeping."""

from __future__ import annotations

import time

import anyio
import pytest
from fakeclock import SkippingClock

from replibatch._engine.clock import SYSTEM_CLOCK, backoff_delay
from replibatch._engine.reads import Reads
from replibatch.errors import RateLimitedError, TransientError


def flaky(failures: list[BaseException], reply: str = "ok"):
    """A call that raises each of `failures` in turn, then returns `reply`; counts its calls."""
    calls = []

    async def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return reply

    return call, calls


def test_transient_failures_back_off_on_the_injected_clock():
    clock = SkippingClock()
    reads = Reads(clock=clock, retries=3, shared=None)
    call, calls = flaky([TransientError("503", status=503), TransientError("502", status=502)])
    started = time.monotonic()
    assert anyio.run(reads, call, backend="asyncio") == "ok"
    assert len(calls) == 3
    assert clock.sleeps == [backoff_delay(1), backoff_delay(2)] == [0.25, 0.5]
    assert time.monotonic() - started < 0.2  # 0.75 s of backoff took no real time
    assert clock.skipped == pytest.approx(0.75)


def test_a_429_waits_its_retry_after_on_the_clock_and_failures_are_bounded():
    clock = SkippingClock()
    reads = Reads(clock=clock, retries=1, shared=None)
    call, calls = flaky([RateLimitedError("429", status=429, retry_after=2.0)])
    assert anyio.run(reads, call, backend="asyncio") == "ok"
    # The 429 drained the read bucket for its Retry-After: the next read waited ~2 s, skipped.
    assert len(calls) == 2 and max(clock.sleeps) == pytest.approx(2.0, abs=0.1)
    call, calls = flaky([TransientError("a", status=503), TransientError("b", status=503)])
    with pytest.raises(TransientError, match="b"):
        anyio.run(reads, call, backend="asyncio")
    assert len(calls) == 2  # one retry, then the failure is the caller's


def test_backoff_doubles_to_its_cap():
    assert [backoff_delay(n) for n in (1, 2, 3, 6, 20)] == [0.25, 0.5, 1.0, 8.0, 8.0]


def test_the_system_clock_waits_for_an_event_or_its_timeout():
    async def main() -> tuple[float, float]:
        event = anyio.Event()
        start = SYSTEM_CLOCK.monotonic()
        await SYSTEM_CLOCK.wait(event, 0.05)  # nobody sets it: the timeout ends the wait
        timed = SYSTEM_CLOCK.monotonic() - start
        event.set()
        start = SYSTEM_CLOCK.monotonic()
        await SYSTEM_CLOCK.wait(event, 10.0)  # already set: returns at once
        return timed, SYSTEM_CLOCK.monotonic() - start

    timed, immediate = anyio.run(main, backend="asyncio")
    assert timed >= 0.04 and immediate < 1.0
