"""One *lane* per API token of a run: everything that talks to Replicate as that token.

Replicate's limits are per account (600 creates/min, 3,000 other requests/min), and a
prediction can only be read, canceled or listed by the account that created it (the spec's
predictions.list: "all predictions created by the user or organization associated with the
provided API token"). So each token gets its own `Edge` (HTTP client), its own learned create
limiter and read bucket, its own shared schedules (the account's slots shared with other
processes on this machine, keyed by the token's account fingerprint), its own `Poller` and its
own `Reconciler` (a sweep lists that account's predictions only). The engine asks the
`TokenPool` which lane takes each create and keeps, per prediction, the lane that made it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replibatch._engine.limiter import DEFAULT_READ_RATE, AdaptiveRateLimiter, TokenBucket
from replibatch._engine.poller import Poller, PollStats
from replibatch._engine.reconcile import Reconciler
from replibatch._engine.shared_limits import SharedSchedule
from replibatch._engine.tokens import TokenSpec
from replibatch._http.edge import ApiReply, Edge

__all__ = ["NO_TOKEN", "Lane", "add_poll_stats"]

NO_TOKEN = TokenSpec("", "no-token")

Read = Callable[["Lane", Callable[[], Awaitable[ApiReply]]], Awaitable[ApiReply]]
ListPage = Callable[["Lane", "str | None", "str | None"], Awaitable[Any]]


@dataclass(eq=False)
class Lane:
    """One token's side of a run. A run without any token has one lane of `NO_TOKEN` whose
    edge raises ConfigurationError when asked to send (a fully cached run needs no token)."""

    spec: TokenSpec
    edge: Edge
    creates: AdaptiveRateLimiter
    reads: TokenBucket
    shared_creates: SharedSchedule | None = None
    shared_reads: SharedSchedule | None = None
    poller: Poller = field(init=False, repr=False)
    reconciler: Reconciler = field(init=False, repr=False)

    @classmethod
    def build(
        cls,
        spec: TokenSpec,
        edge: Edge,
        *,
        rate_limit: float | None,
        cache_dir: Path | None,
        read: Read,
        list_page: ListPage,
        claimed: set[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> Lane:
        """A lane for `spec` over `edge`. `read(lane, call)` runs one read paced by the lane;
        `list_page(lane, created_after, cursor_url)` reads one page of its account's
        predictions; `claimed` is the run's set of predictions already owned by a row."""
        lane = cls(
            spec,
            edge,
            AdaptiveRateLimiter(rate_limit, clock=clock),
            TokenBucket(DEFAULT_READ_RATE, burst=DEFAULT_READ_RATE / 60.0, clock=clock),
        )
        if cache_dir is not None:
            lane.shared_creates = SharedSchedule(cache_dir, edge.account, "create")
            lane.shared_reads = SharedSchedule(cache_dir, edge.account, "read")

        async def lane_read(call: Callable[[], Awaitable[ApiReply]]) -> ApiReply:
            return await read(lane, call)

        async def lane_page(created_after: str | None, cursor_url: str | None) -> Any:
            return await list_page(lane, created_after, cursor_url)

        lane.poller = Poller(edge, lane_read, clock=clock)
        lane.reconciler = Reconciler(lane_page, claimed)
        return lane

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint


def add_poll_stats(lanes: list[Lane]) -> PollStats:
    """The run's polling figures: every lane's added up."""
    total = PollStats()
    for lane in lanes:
        stats = lane.poller.stats
        total.sweeps += stats.sweeps
        total.pages += stats.pages
        total.gets += stats.gets
        total.updates += stats.updates
    return total
