"""The engine of one run: the wiring of the HTTP boundary, the limiters, the budget side, the
cache writer and the collaborators each row uses; and the cleanup when the run is interrupted.

Rows flow (`replibatch._engine.execute` schedules them, `replibatch._engine.row` runs each):

    plan (pure) -> resolve each distinct model once -> cache lookup (hits come back as rows)
    -> pending markers (re-attach to predictions a crashed run had started)
    -> for the rest, in a task group: budget -> create (Prefer: wait) -> poll -> localize files
       -> cost -> cache -> row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from replibatch._engine.admission import Admission
from replibatch._engine.clock import SYSTEM_CLOCK, Clock
from replibatch._engine.download import DownloadLimits
from replibatch._engine.interrupt import StopReport, stop_everything
from replibatch._engine.lanes import NO_TOKEN, Lane, Pollers, PooledCreator
from replibatch._engine.lease import Leases
from replibatch._engine.outputs import Outputs
from replibatch._engine.pager import edge_fetch
from replibatch._engine.progress import Progress
from replibatch._engine.reconcile import Attempt, Outcome
from replibatch._engine.state import RunState
from replibatch._engine.target import Resolver
from replibatch._engine.tokenpool import TokenPool
from replibatch._engine.tokens import TokenSpec
from replibatch._engine.uploads import Uploads
from replibatch._http.edge import Edge
from replibatch._spend.budget import Budget
from replibatch._spend.cost import PriceTable
from replibatch._spend.spendgate import BillingStop, SpendGate
from replibatch._store.cache import ResultCache
from replibatch._store.cache_writer import CacheWriter
from replibatch._store.markers import Owner
from replibatch.errors import ReplicateAPIError

__all__ = ["CLEANUP_SECONDS", "Engine", "EngineOptions"]

# Cleanup on interrupt (one sweep for unanswered creates, then every cancel at once) is bounded
# by this; `run` hands control back sooner (`replibatch._engine.bridge`).
CLEANUP_SECONDS = 30.0


@dataclass(frozen=True)
class EngineOptions:
    """The run's options that shape the engine (already validated by `arun`)."""

    concurrency: int
    rate_limit: float | None = None
    timeout: float | None = None
    retries: int = 5
    refresh: bool = False
    progress: bool | None = None
    live: bool | None = None
    downloads: DownloadLimits = field(default_factory=DownloadLimits)


class Engine:
    """One run's engine. Built on the event loop that runs it; used by one `execute`."""

    def __init__(
        self,
        *,
        edge: Edge,
        cache: ResultCache | None,
        options: EngineOptions,
        budget: Budget,
        prices: PriceTable,
        gate: SpendGate | None = None,
        standing: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        tokens: list[TokenSpec] | None = None,
        edges: list[Edge] | None = None,
    ) -> None:
        # One lane per token (`replibatch._engine.lanes`), `edges` in the order of `tokens`;
        # `edge` is the first one's, for what any token may do (models, uploads, downloads).
        self.edge = edge
        self.cache = cache
        self.options = options
        self.clock = clock
        self.prices = prices
        # The spend ledger and standing budgets (`replibatch._spend.spendgate`).
        self.gate = gate or SpendGate(None, None)
        self.billing = BillingStop()
        self.state = RunState()
        self.owner = Owner.current()
        self.slots = anyio.CapacityLimiter(options.concurrency)
        self.bar: Progress | None = None
        self.stop_report: StopReport | None = None
        specs = tokens or [NO_TOKEN]
        several = len(specs) > 1
        lanes = [
            Lane.build(
                spec, lane_edge, state=self.state, clock=clock,
                cache_dir=cache.directory if cache is not None else None,
                rate_limit=options.rate_limit, retries=options.retries, timeout=options.timeout,
                # With one token its 402 stops the run; with several only that token is left.
                billing=BillingStop() if several else self.billing,
            )
            for spec, lane_edge in zip(specs, edges or [edge], strict=True)
        ]
        self.pool: TokenPool[Lane] = TokenPool(lanes)
        primary = lanes[0]
        self.reads = primary.reads
        self.creator = PooledCreator(self.pool, self.billing)
        self.admission = Admission(
            budget=budget, prices=prices, gate=self.gate, timeout=options.timeout, standing=standing
        )
        self.resolver = Resolver(edge, self.reads)
        self.uploads = Uploads(edge, self.reads)
        self.outputs = Outputs(edge, self.reads, cache, options.downloads)
        self.poller = Pollers(lanes, self.creator.lane_of)
        self.writer = CacheWriter(cache, self.owner, options.refresh) if cache is not None else None
        self.leases = (
            Leases(cache, self.writer, self.owner, clock)
            if cache is not None and self.writer is not None else None
        )

    @property
    def timeout(self) -> float | None:
        return self.options.timeout

    async def cancel(self, prediction_id: str) -> dict[str, Any] | None:
        """Cancel a prediction (as the token that made it); its record, or None when the
        cancel failed."""
        lane = self.creator.lane_of(prediction_id)
        try:
            reply = await lane.reads(lambda: lane.edge.cancel_prediction(prediction_id))
        except ReplicateAPIError:
            return None
        body: dict[str, Any] | None = reply.body
        return body

    async def cancel_everything(self) -> StopReport:
        """Cancel every prediction this run started and has not seen finish, and those its
        unanswered creates made (one sweep): shielded, bounded by `CLEANUP_SECONDS`. Markers
        of confirmed cancels are dropped so the next run creates those rows afresh."""

        async def cancel_now(pid: str) -> Any:
            return (await self.creator.lane_of(pid).edge.cancel_prediction(pid)).body

        unanswered = [
            (attempt, self.state.attempt_keys.get(position))
            for position, attempt in self.state.attempts.items()
        ]
        report = await stop_everything(
            cancel=cancel_now,
            sweep=self._sweep_unanswered,
            in_flight=dict(self.state.in_flight),
            unanswered=unanswered,
            deadline=CLEANUP_SECONDS,
        )
        if self.writer is not None:
            # Confirmed cancels, and rows whose create was never sent: nothing to re-attach to.
            for key in [*report.cleared, *self.state.unsent]:
                self.writer.clear(key)
        self.stop_report = report
        return report

    async def _sweep_unanswered(self, attempts: list[Attempt]) -> dict[Attempt, Outcome]:
        """One unpaced sweep per token for the unanswered creates: each is looked for in the
        account of the token that sent it (`RunState.attempt_tokens`)."""
        sent_by = {
            attempt: self.state.attempt_tokens.get(position)
            for position, attempt in self.state.attempts.items()
        }
        outcomes: dict[Attempt, Outcome] = {}
        for lane in self.pool.lanes:
            mine = [a for a in attempts if sent_by.get(a, self.pool.lanes[0].fingerprint) in
                    (lane.fingerprint, None)]
            if not mine:
                continue

            # cleanup reads straight from the token's edge, unpaced
            outcomes.update(await lane.reconciler.sweep(mine, edge_fetch(lane.edge)))
        return outcomes
