"""One *lane* per API token of a run: everything that talks to Replicate as that token.

Replicate's limits are per account (600 creates/min, 3,000 other requests/min), and a
prediction can only be read, canceled or listed by the account that created it (the spec's
predictions.list: "all predictions created by the user or organization associated with the
provided API token"). So each token gets its own `Edge` (HTTP client), its own `Creator` (with
its learned create limiter), its own `Reads` pacing, its own shared schedules (the account's
slots shared with other processes on this machine, keyed by the token's account fingerprint),
its own `Poller` and its own `Reconciler` (a sweep lists that account's predictions only).

`PooledCreator` is what the rows call to create: it asks the `TokenPool` which lane takes the
create, moves the row to another lane when its token answers 401 or 402 (such an answer created
nothing), and remembers which lane made each prediction; `Pollers` sends each row's wait to the
poller of the lane that made its prediction. With one token both are a thin layer over that
token's own `Creator` and `Poller`, which behave exactly as before.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from replibatch._engine.clock import Clock
from replibatch._engine.create import Creator, LaneClosed, Sent
from replibatch._engine.poller import Poller, PollStats
from replibatch._engine.reads import Reads
from replibatch._engine.reconcile import Reconciler
from replibatch._engine.shared_limits import SharedSchedule
from replibatch._engine.state import RunState
from replibatch._engine.target import Target
from replibatch._engine.tokenpool import TokenPool
from replibatch._engine.tokens import TokenSpec
from replibatch._http.edge import Edge
from replibatch._spend.spendgate import BillingStop, PaymentRequiredError, is_payment_required
from replibatch.errors import AuthenticationError, ReplicateAPIError

__all__ = ["NO_TOKEN", "Lane", "Pollers", "PooledCreator"]

# A run without any token has one lane of this spec: its edge raises ConfigurationError when
# asked to send (a fully cached run needs no token).
NO_TOKEN = TokenSpec("", "no-token")


@dataclass(eq=False)
class Lane:
    """One token's side of a run."""

    spec: TokenSpec
    edge: Edge
    reads: Reads
    reconciler: Reconciler
    creator: Creator
    poller: Poller

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint

    @property
    def creates(self) -> Any:
        """The lane's learned create limiter (what `TokenPool.choose` weighs)."""
        return self.creator.limiter

    @classmethod
    def build(
        cls,
        spec: TokenSpec,
        edge: Edge,
        *,
        state: RunState,
        clock: Clock,
        cache_dir: Path | None,
        rate_limit: float | None,
        retries: int,
        timeout: float | None,
        billing: BillingStop,
    ) -> Lane:
        """A lane for `spec` over `edge`. `billing`: where a 402 to this lane's creates is kept
        (the run's own with one token; the lane's own with several, as the pool moves on)."""
        shared_creates = shared_reads = None
        if cache_dir is not None:
            # Other processes on this machine using the same account share its limits with us.
            shared_creates = SharedSchedule(cache_dir, edge.account, "create")
            shared_reads = SharedSchedule(cache_dir, edge.account, "read")
        reads = Reads(clock=clock, retries=retries, shared=shared_reads)

        async def list_page(created_after: str | None, cursor_url: str | None) -> Any:
            if cursor_url:
                reply = await reads(lambda: edge.list_predictions(cursor_url=cursor_url))
            else:
                reply = await reads(lambda: edge.list_predictions(created_after=created_after))
            return reply.body

        reconciler = Reconciler(list_page, state.claimed)
        creator = Creator(
            edge=edge, state=state, reconciler=reconciler, clock=clock, rate_limit=rate_limit,
            retries=retries, timeout=timeout, billing=billing, token=spec.fingerprint or None,
            shared=shared_creates,
        )
        poller = Poller(edge, reads, clock=clock.monotonic)
        return cls(spec, edge, reads, reconciler, creator, poller)


class PooledCreator:
    """Creates for the rows, over the pool's lanes (see the module docstring). `billing` is the
    run's: tripped when the last token is set aside for payment."""

    def __init__(self, pool: TokenPool[Lane], billing: BillingStop) -> None:
        self.pool = pool
        self._billing = billing
        self._made_by: dict[str, Lane] = {}  # prediction id -> the lane that created it

    def lane_of(self, prediction_id: str) -> Lane:
        """The lane whose token created (or re-attached to) the prediction (default: first)."""
        return self._made_by.get(prediction_id, self.pool.lanes[0])

    def adopt(self, prediction_id: str, lane: Lane) -> None:
        """Record that `lane`'s token made the prediction (a re-attach found it there)."""
        self._made_by[prediction_id] = lane

    async def create(
        self,
        position: int,
        target: Target,
        payload: dict[str, Any],
        key: str | None = None,
        *,
        cancel_after: float | None = None,
    ) -> Sent:
        """`Creator.create` on the lane the pool chooses; a 401 or 402 sets that lane aside
        and the row moves to another (with one token it is raised as before). Raises
        PaymentRequiredError (the run's billing stop) or AuthenticationError when every token
        was set aside; otherwise what `Creator.create` raises (an unknown outcome never moves)."""
        pool = self.pool
        while True:
            lane = pool.choose()
            if lane is None:
                error = pool.stop_error()
                if isinstance(error, AuthenticationError):
                    raise error
                self._billing.trip(None, error, text=error.detail)
                raise self._billing.error()
            pool.taken(lane)
            wanted: Callable[[], bool] | None = None
            if pool.several:
                wanted = partial(pool.is_active, lane)
            try:
                sent = await lane.creator.create(
                    position, target, payload, key, cancel_after=cancel_after, still_wanted=wanted
                )
            except LaneClosed:
                pool.given_back(lane)
                continue  # set aside while this create waited for its place
            except ReplicateAPIError as exc:
                pool.given_back(lane)
                refused = isinstance(exc, (AuthenticationError, PaymentRequiredError))
                if pool.several and (refused or is_payment_required(exc)):
                    # A 401 or 402 created nothing: the token is set aside and the row moves.
                    self._set_aside(lane, exc)
                    continue
                raise
            pool.sent(lane)
            self._made_by[sent[0]["id"]] = lane
            return sent

    def _set_aside(self, lane: Lane, exc: ReplicateAPIError) -> None:
        record = self.pool.set_aside(lane, exc)
        if record is not None:
            # Said once, as it happens; the summary keeps it too (`TokenPool.summary`).
            warnings.warn(record.message(), RuntimeWarning, stacklevel=2)
            lane.creator.wake()  # creates queued on it re-choose now, not at their place's time


class Pollers:
    """The engine's poller face over every lane's `Poller`: a row's wait goes to the poller of
    the lane that made its prediction."""

    def __init__(self, lanes: list[Lane], lane_of: Callable[[str], Lane]) -> None:
        self._lanes = lanes
        self._lane_of = lane_of

    async def wait(
        self, record: dict[str, Any], *, sent: float, deadline: float | None = None
    ) -> dict[str, Any]:
        """`Poller.wait` on the prediction's own lane."""
        return await self._lane_of(record["id"]).poller.wait(record, sent=sent, deadline=deadline)

    async def run(self) -> None:
        """Every lane's poller, until each is closed."""
        async with anyio.create_task_group() as group:
            for lane in self._lanes:
                group.start_soon(lane.poller.run)

    def close(self) -> None:
        for lane in self._lanes:
            lane.poller.close()

    @property
    def stats(self) -> PollStats:
        """The run's polling figures: every lane's added up."""
        total = PollStats()
        for lane in self._lanes:
            stats = lane.poller.stats
            total.sweeps += stats.sweeps
            total.pages += stats.pages
            total.gets += stats.gets
            total.updates += stats.updates
        return total
