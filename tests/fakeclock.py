"""A clock for engine tests: monotonic time jumps over every wait the engine asks for.

The engine's own waits (retry backoff, pauses before a create, lease polls) return at once and
advance `monotonic` by what they asked; wall time stays real, because the simulator dates
predictions by the real clock and the reconcile sweep compares against it. Components that sleep
on the event loop's own clock (the poller) still see time move forward consistently.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import pandas as pd

from replibatch._engine.bridge import run_in_thread
from replibatch._engine.options import RunOptions
from replibatch._engine.runner import _arun_with


class SkippingClock:
    """`replibatch._engine.clock.Clock` whose waits take no real time; records each one."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def wall(self) -> float:
        return time.time()

    def _skip(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.skipped += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self._skip(seconds)
        await anyio.lowlevel.checkpoint()

    async def wait(self, event: anyio.Event, timeout: float) -> None:
        if not event.is_set():
            self._skip(timeout)
        await anyio.lowlevel.checkpoint()


def run_on(clock: Any, df: pd.DataFrame, model: str | None = None, inputs: Any = None,
           **options: Any) -> pd.DataFrame:
    """`rb.run` on `clock` (through the engine's private entry point)."""
    return run_in_thread(lambda: _arun_with(df, model, inputs, RunOptions(**options), clock))
