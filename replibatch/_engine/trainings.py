"""The executor of ``rb.train``: one training per row, never created twice.

Trainings are few (a sweep is 4-50 rows) and long (minutes to hours), so they get a compact
executor of their own rather than the prediction engine's machinery. One row's path:

    budget (max_cost: the worst case, timeout x hardware price; standing budgets: the ledger)
    -> marker (a lease, on disk BEFORE the create, holding what will be sent)
    -> upload the training-data files (once per content hash) -> create (the create limiter)
    -> marker names the training id -> poll ``GET /v1/trainings/{id}`` (the create reply's urls
       point at /v1/predictions, cassettes/trainings-create.yaml) with the logs' percentage on
       the bar -> cancel on Replicate at ``timeout`` -> cost -> ledger -> cache.

Money rules (README "Fine-tuning sweeps"): a create whose reply was lost (a 5xx, a connection
dropped after sending) is reconciled by a sweep of ``GET /v1/trainings`` matched by trainer
version and the exact input sent (`replibatch._engine.reconcile`); it is created again only when
the sweep covered the whole window and found nothing, and when the sweep cannot tell the row
ends ``error`` with its marker kept. A marker left by a run that died (``kill -9``) is
re-attached by the next run: by the training id it names, else by the same sweep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import anyio

from replibatch._engine.limiter import DEFAULT_READ_RATE, AdaptiveRateLimiter, TokenBucket
from replibatch._engine.reconcile import Attempt, Reconciler, parse_time
from replibatch._engine.training_bar import TrainingBar
from replibatch._engine.training_progress import training_progress
from replibatch._engine.training_store import TrainingStore
from replibatch._http import trainings as api
from replibatch._http.edge import Edge
from replibatch._spend.budget import Budget
from replibatch._spend.cost import PriceTable
from replibatch._spend.ledger import BudgetRefusal
from replibatch._spend.training_cost import training_cost
from replibatch._spend.training_ledger import TrainingLedger
from replibatch._store.cache import ResultCache
from replibatch._store.markers import Owner, is_held_elsewhere
from replibatch._table.inputs import FileInput, map_files
from replibatch._table.training_plan import TrainingJob, error_training_row, training_row
from replibatch.errors import (
    AuthenticationError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ReplicateAPIError,
    TransientError,
)

__all__ = ["Trainer", "TrainingExecutor"]

TERMINAL = frozenset(("succeeded", "failed", "canceled"))
CANCEL_LATENCY = 1.1  # as predictions (`reserve.CANCEL_LATENCY`): a cancel takes time to land
POLL_FIRST_S, POLL_GROWTH, POLL_CAP_S = 0.05, 1.5, 5.0
CLEANUP_S = 30.0


@dataclass(frozen=True)
class Trainer:
    """The trainer resolved once: ``owner/name``, the version trained, its input schema."""

    model: str
    version: str
    schema: Any = field(default=None, compare=False, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TrainingExecutor:
    """Runs training rows for one call of ``rb.train`` on one event loop.

    `store` None: no cache, no markers (nothing survives the process). `clock` is monotonic
    seconds (injectable for tests); `sleep` is awaited between polls.
    """

    def __init__(
        self, *, edge: Edge, store: ResultCache | None, trainer: Trainer, prices: PriceTable,
        budget: Budget, ledger: TrainingLedger, timeout: float | None, retries: int,
        rate_limit: float | None, concurrency: int, bar: TrainingBar | None = None,
        refresh: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    ) -> None:
        self.edge, self.store, self.trainer, self.prices = edge, store, trainer, prices
        self.budget, self.ledger, self.timeout, self.retries = budget, ledger, timeout, retries
        self.bar, self.clock, self.sleep = bar, clock, sleep
        self.creates = AdaptiveRateLimiter(rate_limit, clock=clock)
        self.reads = TokenBucket(DEFAULT_READ_RATE, burst=DEFAULT_READ_RATE / 60.0, clock=clock)
        self.slots = anyio.CapacityLimiter(concurrency)
        self.budget_changed = anyio.Event()
        self.owner = Owner.current()
        self.claimed: set[str] = set()
        self.reconciler = Reconciler(self._list_page, self.claimed)
        self.in_flight: dict[str, str | None] = {}  # training id -> its row's cache key
        self.attempts: dict[int, tuple[Attempt, str | None]] = {}  # unanswered creates
        self.disk = TrainingStore(store, self.owner, refresh=refresh)
        self.uploads: dict[str, str] = {}
        self.upload_lock = anyio.Lock()
        self.creates_sent = 0

    # -- reads, uploads ----------------------------------------------------------------------
    async def read(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """A read (GET, cancel, list, upload): paced, retried on 429 and transient failures."""
        failures = 0
        while True:
            delay = self.reads.reserve()
            if delay > 0:
                await anyio.sleep(delay)
            try:
                return await call()
            except RateLimitedError as exc:
                await anyio.sleep(exc.retry_after or 1.0)
            except TransientError:
                failures += 1
                if failures > self.retries:
                    raise
                await anyio.sleep(min(0.25 * 2 ** (failures - 1), 8.0))

    async def _list_page(self, _created_after: str | None, cursor_url: str | None) -> Any:
        return (await self.read(lambda: api.list_trainings(self.edge, cursor_url))).body

    async def prepare_input(self, raw: dict) -> dict:
        """Upload each training-data file once per content hash (files API); its URL is sent."""
        files: list[FileInput] = []
        map_files(raw, files.append)
        for file in files:
            async with self.upload_lock:
                if file.sha256 not in self.uploads:
                    self.uploads[file.sha256] = await self.read(
                        lambda f=file: self.edge.upload_file(  # type: ignore[misc]
                            f.data, filename=f.filename, content_type=f.content_type
                        )
                    )
        return map_files(raw, lambda f: self.uploads[f.sha256]) if files else raw

    # -- one row -----------------------------------------------------------------------------
    def worst_case(self) -> float | None:
        """What one training may cost at most: timeout x its hardware price (+ the time a
        cancel takes); None when either is unknown."""
        price = self.prices.lookup(self.trainer.ref)
        if price is None or price.kind != "per_second" or price.usd_per_second is None:
            return None
        if self.timeout is None:
            return None
        return float(price.usd_per_second) * self.timeout * CANCEL_LATENCY

    async def run_row(self, job: TrainingJob, key: str | None, pending: dict | None) -> dict:
        """Run one row to its result row; never raises for the row's own failures."""
        async with self.slots:
            reservation = entry = None
            record: dict | None = None
            meta: dict = dict((pending or {}).get("meta") or {})
            sent = self.clock()
            try:
                if pending is not None and key is not None and is_held_elsewhere(pending, self.owner):
                    shared = await self.disk.await_other_run(key)
                    if shared is not None:
                        return shared
                    pending = self.disk.pending(key)
                if pending is not None:
                    record = await self._reattach(pending)
                if record is None:
                    worst = self.worst_case()
                    if self.budget.max_cost is not None:
                        if worst is None:
                            return error_training_row("skipped_budget", self._unbounded_reason())
                        reservation = await self._reserve(worst)
                        if reservation is None:
                            return error_training_row(
                                "skipped_budget",
                                self.budget.skip_reason(self.trainer.model, worst=worst),
                            )
                    opened = await self.ledger.reserve(
                        worst, trainer=self.trainer.model, version=self.trainer.version
                    )
                    if isinstance(opened, BudgetRefusal):
                        self._settle(reservation, None)
                        await self.disk.forget(key)
                        return error_training_row("skipped_budget", str(opened))
                    entry = opened
                    payload = await self.prepare_input(job.input)
                    if key is not None:
                        meta = {"model": self.trainer.model, "version": self.trainer.version,
                                "kind": "training", "destination": job.destination,
                                "sent_at": _utcnow().isoformat(), "sent_input": payload}
                        if not await self.disk.mark(key, "", meta, claim=True):
                            await self.ledger.release(entry)
                            self._settle(reservation, None)
                            shared = await self.disk.await_other_run(key)
                            return shared or error_training_row(
                                "error", "another run held this training; re-run to re-attach")
                        self.disk.unsent.add(key)
                    record, sent = await self._create(job, payload, key)
                    await self.ledger.attach(entry, record["id"])
                else:
                    await self.ledger.attach(entry, record["id"])
                self.in_flight[record["id"]] = key
                if key is not None and record.get("status") not in TERMINAL:
                    await self.disk.mark(key, record["id"], meta, claim=False)
                record, timed_out = await self._follow(job.position, record, sent)
                row = training_row(record, latency_s=self.clock() - sent)
                row["cost_usd"], row["cost_basis"] = training_cost(self.prices, self.trainer.ref, record)
                if timed_out:
                    row.update(status="timeout", version=None,
                               error=f"timed out after {self.timeout:g} s; canceled on Replicate")
                self.in_flight.pop(record["id"], None)
                await self.ledger.finish(entry, record, row, trainer=self.trainer.model,
                                         version=self.trainer.version)
                entry = None
                self._settle(reservation, row["cost_usd"])
                reservation = None
                await self.disk.keep(key, job, record, row, trainer=self.trainer.model,
                                     version=self.trainer.version)
                return row
            except AuthenticationError:
                raise
            except ReplicateAPIError as exc:
                if record is None and isinstance(exc, OutcomeUnknownError):
                    self.ledger.leave_open(entry)  # may exist and bill: stays counted
                    self._settle(reservation, math.nan)
                    return error_training_row("error", (
                        f"create outcome unknown; the intent marker is kept, the next run "
                        f"re-attaches ({exc})"))
                if record is None:  # refused: nothing was created
                    await self.ledger.release(entry)
                    self._settle(reservation, None)
                    await self.disk.forget(key)
                    return error_training_row("error", str(exc))
                self.ledger.leave_open(entry)
                self._settle(reservation, None)
                return error_training_row(
                    "error", f"lost track of training {record['id']} ({exc}); re-run to re-attach",
                    training_id=record["id"])

    def _unbounded_reason(self) -> str:
        if self.timeout is None:
            return (f"max_cost: a training's worst case is timeout x its hardware price; pass "
                    f"timeout= so that {self.trainer.model} can be bounded")
        return (f"max_cost: the hardware of trainer {self.trainer.model} is unknown, so the cap "
                f"cannot be kept; pass hardware={{'{self.trainer.model}': 'gpu-...'}} or prices=")

    async def _reserve(self, worst: float) -> Any:
        """Room for one training's worst case under ``max_cost``; waits while trainings in
        flight may free room (they finish below their worst case), None when it never fits."""
        while True:
            reservation = self.budget.try_start(self.trainer.model, worst=worst)
            if reservation is not None:
                return reservation
            if not self.budget.worth_waiting(self.trainer.model, worst=worst):
                return None
            await self.budget_changed.wait()

    def _settle(self, reservation: Any, cost: float | None) -> None:
        """Close a reservation (None: nothing was created) and wake rows waiting for room."""
        if reservation is None:
            return
        if cost is None:
            self.budget.release(reservation)
        else:
            self.budget.finish(reservation, cost)
        self.budget_changed.set()
        self.budget_changed = anyio.Event()

    async def _create(self, job: TrainingJob, payload: dict, key: str | None) -> tuple[dict, float]:
        """Send the create under the limiter; returns the first record and when it was sent.
        A lost reply is reconciled; raises OutcomeUnknownError when that cannot tell."""
        failures = 0
        while True:
            place = self.creates.reserve()
            while (pause := place.wait()) > 0:
                await anyio.sleep(pause)
            attempt = Attempt("version", self.trainer.version, payload, _utcnow())
            self.attempts[job.position] = (attempt, key)
            if key is not None:
                self.disk.unsent.discard(key)
            sent = self.clock()
            self.creates.on_sent(sent)
            self.creates_sent += 1
            try:
                reply = await api.create_training(
                    self.edge, self.trainer.model, self.trainer.version,
                    destination=job.destination, input=payload,
                )
            except RateLimitedError as exc:
                del self.attempts[job.position]
                self.creates.on_throttled(exc.retry_after, sent_at=sent)
                continue
            except OutcomeUnknownError as exc:
                failures += 1
                outcome = await self.reconciler.find(attempt)
                del self.attempts[job.position]
                if outcome.record is not None:
                    return outcome.record, sent
                if outcome.unknown:
                    raise OutcomeUnknownError(f"{exc}; {outcome.reason}") from None
                if failures > self.retries:  # proven absent every time: safe to give up
                    raise TransientError(f"{exc} (no training was created)") from None
                continue
            except TransientError:
                del self.attempts[job.position]
                failures += 1
                if failures > self.retries:
                    raise
                await anyio.sleep(min(0.25 * 2 ** (failures - 1), 8.0))
                continue
            except BaseException:
                raise  # interrupted: the attempt stays for cleanup's sweep
            # In flight before the attempt is forgotten: cleanup finds it one way or the other.
            self.in_flight[reply.body["id"]] = key
            del self.attempts[job.position]
            self.claimed.add(reply.body["id"])
            self.creates.on_success(sent_at=sent)
            return reply.body, sent

    async def _reattach(self, pending: dict) -> dict | None:
        """The training an earlier run started for this row; None when it provably does not
        exist. Raises OutcomeUnknownError when that cannot be told."""
        training_id = pending.get("prediction_id")
        if training_id:
            try:
                record = (await self.read(lambda: api.get_training(self.edge, training_id))).body
            except NotFoundError:
                return None
            except AuthenticationError:
                raise
            except ReplicateAPIError as exc:
                raise OutcomeUnknownError(f"training {training_id} could not be read: {exc}") from None
            self.claimed.add(record["id"])
            return dict(record)
        meta = pending.get("meta") or {}
        sent_at, sent_input = parse_time(meta.get("sent_at")), meta.get("sent_input")
        if sent_at is None or not isinstance(sent_input, dict):
            return None
        outcome = await self.reconciler.find(Attempt("version", self.trainer.version, sent_input, sent_at))
        if outcome.unknown:
            raise OutcomeUnknownError(outcome.reason)
        return outcome.record

    async def _follow(self, position: int, record: dict, sent: float) -> tuple[dict, bool]:
        """Poll the training to its end (the bar follows its logs); cancel it at the deadline.
        Returns the last record and whether the deadline canceled it."""
        deadline = None if self.timeout is None else sent + self.timeout
        polls = 0
        while record.get("status") not in TERMINAL:
            if self.bar is not None:
                self.bar.advance(position, training_progress(record.get("logs")))
            wait = min(POLL_CAP_S, POLL_FIRST_S * POLL_GROWTH ** min(polls, 32))
            if deadline is not None:
                left = deadline - self.clock()
                if left <= 0:
                    training_id = record["id"]
                    with anyio.CancelScope(shield=True):
                        reply = await self.read(
                            lambda: api.cancel_training(self.edge, training_id)  # noqa: B023
                        )
                    final = dict(reply.body or record)
                    # A training that finished just as it was canceled keeps its result.
                    return final, final.get("status") != "succeeded"
                wait = min(wait, left)
            await self.sleep(wait)
            polls += 1
            training_id = record["id"]
            reply = await self.read(lambda: api.get_training(self.edge, training_id))  # noqa: B023
            record = dict(reply.body)
        return record, False

    # -- interrupt -----------------------------------------------------------------------------
    async def cancel_everything(self) -> None:
        """On interrupt (shielded, bounded): cancel every training in flight and those the
        unanswered creates made (one sweep); confirmed cancels and never-sent creates drop
        their markers, so the next run starts those rows afresh."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_S):
            targets = dict(self.in_flight)
            if self.attempts:
                found = await self.reconciler.sweep([a for a, _ in self.attempts.values()])
                for attempt, key in self.attempts.values():
                    outcome = found.get(attempt)
                    if outcome is not None and outcome.record is not None:
                        targets[outcome.record["id"]] = key
                    elif outcome is not None and outcome.proven_absent and key is not None:
                        self.disk.unsent.add(key)
            for training_id, key in targets.items():
                try:
                    reply = await api.cancel_training(self.edge, training_id)
                except ReplicateAPIError:
                    continue  # the marker stays: the next run re-attaches
                if (reply.body or {}).get("status") == "canceled":
                    await self.disk.forget(key)
            for key in list(self.disk.unsent):
                await self.disk.forget(key)
