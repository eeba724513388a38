"""Creating one prediction: the create limiter, retries, and the hand-off to reconcile.

Policy for a create whose outcome is unknown (the connection dropped after the request was sent,
or a 5xx came back from a gateway): never blindly re-send. The account's predictions created
since just before the attempt are listed (`replibatch._engine.reconcile`) and one with the same
target and input that no other row of this run has claimed is adopted; only when a sweep over the
whole window proved nothing was made is the create sent again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any

import anyio

from replibatch._engine import reserve
from replibatch._engine.clock import Clock, backoff_delay
from replibatch._engine.limiter import AdaptiveRateLimiter
from replibatch._engine.reads import THROTTLE_RETRIES
from replibatch._engine.reconcile import Attempt, Reconciler
from replibatch._engine.shared_limits import SharedSchedule
from replibatch._engine.state import RunState
from replibatch._engine.target import Target
from replibatch._http.edge import Edge
from replibatch._spend.spendgate import BillingStop, is_payment_required
from replibatch.errors import OutcomeUnknownError, RateLimitedError, ReplicateAPIError, TransientError

__all__ = ["MAX_WAIT", "Creator", "LaneClosed", "Sent"]

MAX_WAIT = 60  # Prefer: wait=N accepts 1..60

Sent = tuple[dict[str, Any], float, float]
"""A create's first prediction record, and when its successful attempt was sent (monotonic,
wall clock)."""


class LaneClosed(Exception):
    """The create's token was set aside while it waited for its place (`still_wanted` said
    so): nothing was sent, the caller moves the row to another token."""


class Creator:
    """Sends the creates of one run under its create limiter (and the machine's shared one)."""

    def __init__(
        self,
        *,
        edge: Edge,
        state: RunState,
        reconciler: Reconciler,
        clock: Clock,
        rate_limit: float | None,
        retries: int,
        timeout: float | None,
        billing: BillingStop,
        token: str | None,
        shared: SharedSchedule | None,
    ) -> None:
        self._edge = edge
        self._state = state
        self._reconciler = reconciler
        self._clock = clock
        self._retries = retries
        self._timeout = timeout
        self._billing = billing
        self._token = token
        self._shared = shared
        self.limiter = AdaptiveRateLimiter(rate_limit, clock=clock.monotonic)
        self._changed = anyio.Event()

    def _wait_seconds(self, limit: float | None) -> int | None:
        """The create is held no longer than the row's deadline (then polled and canceled at it)."""
        wait: int | None = MAX_WAIT if limit is None else min(MAX_WAIT, math.floor(limit))
        return None if wait is not None and wait < 1 else wait

    async def _place(self, still_wanted: Callable[[], bool] | None = None) -> None:
        """Wait for the create's place under our limiter and the machine's shared one. Raises
        LaneClosed as soon as `still_wanted` says the place is no longer wanted."""
        place = self.limiter.reserve()
        while (pause := place.wait()) > 0:
            if still_wanted is not None and not still_wanted():
                raise LaneClosed
            # Wake early when the limiter re-plans (a 429 pause, a learned higher rate).
            await self._clock.wait(self._changed, pause)
        if self._shared is not None:
            # The account's slots, shared with other processes on this machine.
            delay = self._shared.claim(self.limiter.rate_per_minute)
            if delay > 0:
                await self._clock.sleep(delay)

    async def create(
        self,
        position: int,
        target: Target,
        payload: dict[str, Any],
        key: str | None = None,
        *,
        cancel_after: float | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> Sent:
        """Create one prediction, honouring the limiter.

        Returns the first prediction record and when the successful attempt was sent (monotonic
        and wall clock): latency and timeouts count from there, not from queueing for a slot.

        While a create is unanswered it stays in ``state.attempts``: if the run is cancelled
        meanwhile, cleanup's one sweep finds the prediction it may have made and cancels it.
        A lost reply is reconciled; the create is sent again only when a sweep covering the whole
        window proved that nothing was made. Raises OutcomeUnknownError when the sweep could not
        tell (the caller keeps the marker), TransientError / ReplicateAPIError when the create
        failed and created nothing (a 402 also stops every later create of the run).
        `still_wanted` is asked after each wait for a place: False raises LaneClosed, unsent
        (several tokens: this one was set aside meanwhile).
        """
        failures = throttles = 0
        limit = cancel_after if cancel_after is not None else self._timeout
        wait = self._wait_seconds(limit)
        while True:
            await self._place(still_wanted)
            if still_wanted is not None and not still_wanted():
                raise LaneClosed
            if self._billing.stopped:
                # The account answered 402: no create is sent any more in this run.
                raise self._billing.error()
            attempt = Attempt(
                target.kind, target.ident, payload, datetime.fromtimestamp(self._clock.wall(), timezone.utc)
            )
            self._state.attempts[position] = attempt
            self._state.attempt_keys[position] = key
            self._state.attempt_tokens[position] = self._token
            if key is not None:
                self._state.unsent.discard(key)
            sent, sent_wall = self._clock.monotonic(), self._clock.wall()
            self.limiter.on_sent(sent)
            try:
                reply = await self._edge.create_prediction(
                    target, payload, wait=wait,
                    cancel_after=None if cancel_after is None else max(
                        cancel_after, reserve.CANCEL_AFTER_MINIMUM_S
                    ),
                )
            except RateLimitedError as exc:
                del self._state.attempts[position]
                throttles += 1
                self._throttled(exc.retry_after, sent)
                if throttles > THROTTLE_RETRIES:
                    raise
                continue
            except OutcomeUnknownError as exc:
                if exc.status:
                    self.limiter.on_passed(sent_at=sent)  # a 5xx got past the rate limit
                failures += 1
                outcome = await self._reconciler.find(attempt)
                del self._state.attempts[position]
                if outcome.record is not None:
                    self._state.in_flight[outcome.record["id"]] = key
                    return outcome.record, sent, sent_wall
                if outcome.unknown:
                    # Never sent blind: the marker stays and the next run re-attaches.
                    raise OutcomeUnknownError(f"{exc}; {outcome.reason}") from None
                # A sweep over the whole window proved nothing was created: sending is safe.
                if failures > self._retries:
                    raise TransientError(f"{exc} (no prediction was created)") from None
                await self._clock.sleep(backoff_delay(failures))
                continue
            except TransientError as exc:
                del self._state.attempts[position]
                if exc.status:
                    self.limiter.on_passed(sent_at=sent)
                failures += 1
                if failures > self._retries:
                    raise
                await self._clock.sleep(backoff_delay(failures))
                continue
            except ReplicateAPIError as exc:
                del self._state.attempts[position]
                if is_payment_required(exc):
                    self._billing.trip(self._token, exc)
                raise
            body: dict[str, Any] = reply.body
            # Registered as in flight before the attempt is forgotten, so that a cancellation
            # at any point finds the prediction one way or the other.
            self._state.in_flight[body["id"]] = key
            del self._state.attempts[position]
            # Narrows later reconcile sweeps to where an unanswered create can have landed.
            received = datetime.fromtimestamp(self._clock.wall(), timezone.utc)
            self._reconciler.answered(attempt.sent_at, received, body)
            self._limiter_event(partial(self.limiter.observe, reply.headers))
            self._limiter_event(partial(self.limiter.on_success, sent_at=sent))
            self._state.claimed.add(body["id"])
            return body, sent, sent_wall

    def wake(self) -> None:
        """Wake every create waiting for its place (they ask `still_wanted` again)."""
        self._changed.set()
        self._changed = anyio.Event()

    def _throttled(self, hint: float | None, sent: float) -> None:
        episodes = self.limiter.episodes
        self._limiter_event(lambda: self.limiter.on_throttled(hint, sent_at=sent))
        if self._shared is not None and self.limiter.episodes != episodes:
            self._shared.pause(self.limiter.pause_remaining())
            self._shared.learned(self.limiter.rate_per_minute)

    def _limiter_event(self, change: Callable[[], Any]) -> None:
        """Apply a limiter change; wake every waiting create if it voided their places."""
        epoch = self.limiter.epoch
        change()
        if self.limiter.epoch != epoch:
            self._changed.set()
            self._changed = anyio.Event()
