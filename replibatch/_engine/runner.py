"""Run a frame of jobs against Replicate: the scheduling engine behind ``run`` and ``arun``.

One ``_Engine`` per run owns the event-loop side: the ``Edge`` (HTTP), the create limiter and the
read bucket, the concurrency limiter, the budget, the cache and the progress bar. Rows flow:

    plan (pure) -> resolve each distinct model once -> cache lookup (hits come back as rows)
    -> pending markers (re-attach to predictions a crashed run had started)
    -> for the rest, in a task group: budget -> create (Prefer: wait) -> poll -> localize files
       -> cost -> cache -> row.

Policy for a create whose outcome is unknown (the connection dropped after the request was sent,
or a 5xx came back from a gateway): never blindly re-send. The engine lists the account's
predictions created since just before the attempt and adopts one with the same target and input
that no other row of this run has claimed; only when none is found does it create again. The same
search runs on interrupt, so a create whose reply had not arrived yet is still canceled.
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

import anyio
import numpy as np
import pandas as pd

from replibatch._engine import reserve
from replibatch._engine.dedupe import group_identical, shared_row
from replibatch._engine.download import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_MAX_FILE_BYTES,
    Downloaded,
    DownloadError,
    DownloadLimits,
)
from replibatch._engine.interrupt import StopReport, stop_everything
from replibatch._engine.limiter import DEFAULT_READ_RATE, AdaptiveRateLimiter, TokenBucket, poll_interval
from replibatch._engine.outcome import apply_final_status
from replibatch._engine.pager import PageQuery, edge_fetch
from replibatch._engine.poller import Poller
from replibatch._engine.progress import open_progress
from replibatch._engine.reconcile import Attempt, Reconciler, parse_time
from replibatch._engine.reserve import Hold, Seen, last_chance_hold, plan_hold, work_size
from replibatch._engine.runsummary import RunSummary
from replibatch._engine.shared_limits import SharedSchedule
from replibatch._http.edge import Edge, resolve_token
from replibatch._spend.budget import Budget
from replibatch._spend.cost import PriceTable, cost_of, expected_cost
from replibatch._spend.ledger import BudgetRefusal
from replibatch._spend.spend import budgets_from_env, ledger_for
from replibatch._spend.spendgate import BillingStop, SpendGate, is_payment_required
from replibatch._store.cache import CacheEntry, ResultCache, open_cache
from replibatch._store.cache_writer import CacheWriter
from replibatch._store.gc import paused as gc_paused
from replibatch._store.keys import cache_key
from replibatch._store.markers import Owner, is_held_elsewhere, run_ended, run_started
from replibatch._table import frame as frames
from replibatch._table.inputs import SMALL_FILE_BYTES, FileInput, content_hash, data_uri, map_files
from replibatch._table.refs import ModelRef, parse_model_ref
from replibatch._table.schema import InputSchema, promote_files, shape_input
from replibatch._table.summary import summarize
from replibatch.errors import (
    AuthenticationError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    ReplicateAPIError,
    TransientError,
)

__all__ = ["DEFAULT_CONCURRENCY", "arun", "run"]

DEFAULT_CONCURRENCY = 128
MAX_WAIT = 60  # Prefer: wait=N accepts 1..60
_TERMINAL = {"succeeded", "failed", "canceled", "aborted"}
_THROTTLE_RETRIES = 60  # a 429 creates nothing, so it may be retried far more than a failure
# Cleanup on interrupt (one sweep for unanswered creates, then every cancel at once) is bounded
# by this. `run` hands control back after `_RETURN_AFTER_INTERRUPT` seconds whatever the number
# in flight; cancels still going continue in its worker thread (a script's exit waits for them).
_CLEANUP_SECONDS = 30.0
_RETURN_AFTER_INTERRUPT = 4.0
LEASE_POLL_S = 0.5  # how often a row waiting on another run's lease looks at the cache
_UNSTORED = (*frames.TIMELINE_COLUMNS, "cached")


@dataclass(frozen=True)
class Target:
    """Where a model reference's predictions are created, and the identity its cache keys use."""

    kind: str  # "version" | "model" | "deployment"
    ident: str  # version id, "owner/name" or "owner/name" of the deployment
    identity: str  # the resolved version (or official model name) that keys the cache
    model_name: str | None  # "owner/name" when known, for cost lookups
    # The version's input schema, when the service published one (rows are checked against it
    # before anything is sent); None: inputs go as they are and the service validates.
    schema: InputSchema | None = field(default=None, compare=False, repr=False)


@dataclass
class _RunState:
    # Predictions started and not seen finish -> the cache key whose marker names them.
    in_flight: dict[str, str | None] = field(default_factory=dict)
    attempts: dict[int, Attempt] = field(default_factory=dict)  # job position -> unanswered create
    attempt_keys: dict[int, str | None] = field(default_factory=dict)
    # Keys whose marker was written but whose create has not been sent (waiting for its place).
    unsent: set[str] = field(default_factory=set)
    claimed: set[str] = field(default_factory=set)
    succeeded: int = 0
    failed: int = 0
    shared: int = 0
    cached: int = 0
    invalid: int = 0  # rows the input schema refused: nothing was sent for them
    spent: float = 0.0


def _validate_options(
    concurrency: int | None,
    rate_limit: float | None,
    timeout: float | None,
    retries: int,
    max_cost: float | None,
) -> int:
    if concurrency is None:
        concurrency = DEFAULT_CONCURRENCY
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
    for name, value in (("rate_limit", rate_limit), ("timeout", timeout), ("max_cost", max_cost)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ConfigurationError(f"{name} must be a positive number or None, got {value!r}")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigurationError(f"retries must be a whole number >= 0, got {retries!r}")
    return concurrency


async def _backoff(attempt: int) -> None:
    """Sleep before retry number `attempt` after a transient failure: 0.25 s doubling to 8 s."""
    await anyio.sleep(min(0.25 * 2 ** (attempt - 1), 8.0))


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _input_for_storage(value: dict) -> dict:
    """The input as stored beside a cached result: file inputs by content hash, never bytes."""
    return map_files(value, content_hash)


def _is_streamed_text(record: dict, row: dict) -> bool:
    """True when tokens were joined into text: a token that happens to be a URL is not a file."""
    return isinstance(record.get("output"), list) and isinstance(row.get("output"), str)


def _cached_row(entry: CacheEntry) -> dict:
    row = entry.row  # each lookup decodes fresh entries: no copy needed
    row["cached"] = True
    return row


def _unwrap(exc: BaseException) -> BaseException:
    """The one real error inside (nested) task-group exception groups, else the group itself."""
    while isinstance(exc, BaseExceptionGroup):
        real = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        if len(real) != 1:
            return exc
        exc = real[0]
    return exc


class _Engine:
    def __init__(
        self,
        *,
        edge: Edge,
        cache: ResultCache | None,
        refresh: bool,
        concurrency: int,
        rate_limit: float | None,
        timeout: float | None,
        retries: int,
        budget: Budget,
        prices: PriceTable,
        progress: bool | None,
        downloads: DownloadLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        live: bool | None = None,
        gate: SpendGate | None = None,
        standing: bool = False,
    ) -> None:
        self.edge = edge
        # The spend ledger and standing budgets (`replibatch._spend.spendgate`); `standing`: a standing
        # cap applies, so rows are reserved at their worst case as under max_cost.
        self.gate = gate or SpendGate(None, None)
        self.standing = standing
        self.billing = BillingStop()
        # Model -> ledger entry of its probe row (no predict time known yet, standing budget).
        self.probes: dict[str, str] = {}
        self.cache = cache
        self.refresh = refresh
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.budget = budget
        self.prices = prices
        self.downloads = downloads or DownloadLimits()
        self.seen: dict[str, Seen] = {}  # model -> predict times of its finished rows
        self.progress_wanted = progress
        self.live_wanted = live
        self.clock = clock
        self.creates = AdaptiveRateLimiter(rate_limit, clock=clock)
        self.reads = TokenBucket(DEFAULT_READ_RATE, burst=DEFAULT_READ_RATE / 60.0, clock=clock)
        self.slots = anyio.CapacityLimiter(concurrency)
        self.state = _RunState()
        self.uploads: dict[str, str] = {}
        self.upload_locks: dict[str, anyio.Lock] = {}
        self.bar: Any = None
        self.budget_changed = anyio.Event()
        self.limiter_changed = anyio.Event()
        self.owner = Owner.current()
        self.writer = CacheWriter(cache, self.owner, refresh) if cache is not None else None
        self.reconciler = Reconciler(self._list_page, self.state.claimed)
        self.poller = Poller(edge_fetch(edge, self._read), edge, self._read, clock=clock)
        # Other processes on this machine using the same account share its limits with us.
        self.shared_creates: SharedSchedule | None = None
        self.shared_reads: SharedSchedule | None = None
        if cache is not None:
            self.shared_creates = SharedSchedule(cache.directory, edge.account, "create")
            self.shared_reads = SharedSchedule(cache.directory, edge.account, "read")
        self.stop_report: StopReport | None = None

    # -- pacing -----------------------------------------------------------------------------

    async def _read_slot(self) -> None:
        delay = self.reads.reserve()
        if delay > 0:
            await anyio.sleep(delay)
        if self.shared_reads is not None:
            delay = self.shared_reads.claim(DEFAULT_READ_RATE)
            if delay > 0:
                await anyio.sleep(delay)

    async def _read(self, call: Callable[[], Any]) -> Any:
        """A read (GET, cancel, list): paced by the read bucket, retried on transient failures."""
        attempt = 0
        while True:
            await self._read_slot()
            try:
                reply = await call()
            except RateLimitedError as exc:
                attempt += 1
                if attempt > _THROTTLE_RETRIES:
                    raise
                self.reads.drain(exc.retry_after or poll_interval(attempt))
                continue
            except TransientError:
                attempt += 1
                if attempt > self.retries:
                    raise
                await _backoff(attempt)
                continue
            return reply

    # -- model resolution -------------------------------------------------------------------

    async def resolve(self, refs: set[str]) -> dict[str, Target | ReplicateAPIError]:
        """Resolve each distinct reference once. Failures come back as values, not raised."""
        out: dict[str, Target | ReplicateAPIError] = {}

        async def one(text: str) -> None:
            ref = parse_model_ref(text)
            try:
                out[text] = await self._resolve_one(ref)
            except AuthenticationError:
                raise
            except ReplicateAPIError as exc:
                out[text] = exc

        async with anyio.create_task_group() as tg:
            for text in refs:
                tg.start_soon(one, text)
        return out

    async def _resolve_one(self, ref: ModelRef) -> Target:
        if ref.kind == "version":
            name = f"{ref.owner}/{ref.name}" if ref.owner else None
            # No request: a fully cached run of a pinned version needs none. Its schema is read
            # later, for the rows the cache lacks (`_execute`); a bare id has no schema to read.
            return Target("version", ref.version, ref.version, name)
        name = f"{ref.owner}/{ref.name}"
        if ref.kind == "deployment":
            reply = await self._read(lambda: self.edge.request("GET", f"/v1/deployments/{name}"))
            release = (reply.body or {}).get("current_release") or {}
            version = release.get("version") or name
            model = release.get("model") or None
            # The release names its model and version; that version's schema checks the rows.
            schema = await self._version_schema(model, version) if model and version != name else None
            return Target("deployment", name, f"deployments/{name}@{version}", model, schema)
        reply = await self._read(lambda: self.edge.request("GET", f"/v1/models/{name}"))
        body = reply.body or {}
        latest_version = body.get("latest_version") or {}
        latest = latest_version.get("id")
        # models-get.yaml: latest_version carries the version's openapi_schema.
        schema = InputSchema.from_openapi(latest_version.get("openapi_schema"))
        if body.get("is_official") or not latest:
            # Official models run through the model endpoint; they are keyed by their latest
            # version when they expose one, so a new release still misses the cache.
            return Target("model", name, latest or name, name, schema)
        return Target("version", latest, latest, name, schema)

    async def _version_schema(self, model: str | None, version: str | None) -> InputSchema | None:
        """The input schema of `model`'s `version` (GET /v1/models/{o}/{n}/versions/{id}), or
        None when it cannot be read: the service then validates the input itself."""
        if not model or not version:
            return None
        try:
            reply = await self._read(
                lambda: self.edge.request("GET", f"/v1/models/{model}/versions/{version}")
            )
        except AuthenticationError:
            raise
        except ReplicateAPIError:
            return None
        return InputSchema.from_openapi((reply.body or {}).get("openapi_schema"))

    # -- inputs ------------------------------------------------------------------------------

    async def prepare_input(self, raw: dict) -> dict:
        """Replace FileInputs by a data URI (small) or an uploaded file's URL (large)."""
        files: list[FileInput] = []
        map_files(raw, files.append)
        if not files:
            return raw
        sent: dict[str, str] = {}
        for file in files:
            if file.sha256 not in sent:
                small = file.size <= SMALL_FILE_BYTES
                sent[file.sha256] = data_uri(file) if small else await self._upload(file)
        return map_files(raw, lambda file: sent[file.sha256])

    async def _upload(self, file: FileInput) -> str:
        lock = self.upload_locks.setdefault(file.sha256, anyio.Lock())
        async with lock:
            if file.sha256 not in self.uploads:
                self.uploads[file.sha256] = await self._read(
                    lambda: self.edge.upload_file(
                        file.data, filename=file.filename, content_type=file.content_type
                    )
                )
        return self.uploads[file.sha256]

    # -- one job -----------------------------------------------------------------------------

    async def create(
        self,
        position: int,
        target: Target,
        payload: dict,
        key: str | None = None,
        *,
        cancel_after: float | None = None,
    ) -> tuple[dict, float, float]:
        """Create one prediction, honouring the limiter.

        Returns the first prediction record and when the successful attempt was sent (monotonic
        and wall clock): latency and timeouts count from there, not from queueing for a slot.

        While a create is unanswered it stays in ``state.attempts``: if the run is cancelled
        meanwhile, cleanup's one sweep finds the prediction it may have made and cancels it.
        A lost reply is reconciled (`replibatch._engine.reconcile`); the create is sent again only when
        a sweep covering the whole window proved that nothing was made. Raises
        OutcomeUnknownError when the sweep could not tell (the caller keeps the marker),
        TransientError / ReplicateAPIError when the create failed and created nothing.
        """
        failures = throttles = 0
        limit = cancel_after if cancel_after is not None else self.timeout
        # The create is held no longer than the row's deadline (then polled and canceled at it).
        wait: int | None = MAX_WAIT if limit is None else min(MAX_WAIT, math.floor(limit))
        if wait is not None and wait < 1:
            wait = None
        while True:
            place = self.creates.reserve()
            while (pause := place.wait()) > 0:
                # Wake early when the limiter re-plans (a 429 pause, a learned higher rate).
                with anyio.move_on_after(pause):
                    await self.limiter_changed.wait()
            if self.shared_creates is not None:
                # The account's slots, shared with other processes on this machine.
                delay = self.shared_creates.claim(self.creates.rate_per_minute)
                if delay > 0:
                    await anyio.sleep(delay)
            if self.billing.stopped:
                # The account answered 402: no create is sent any more in this run.
                raise self.billing.error()
            attempt = Attempt(target.kind, target.ident, payload, _utcnow())
            self.state.attempts[position] = attempt
            self.state.attempt_keys[position] = key
            if key is not None:
                self.state.unsent.discard(key)
            sent, sent_wall = self.clock(), time.time()
            self.creates.on_sent(sent)
            try:
                reply = await self.edge.create_prediction(
                    (target.kind, target.ident), payload, wait=wait,
                    cancel_after=None if cancel_after is None else max(
                        cancel_after, reserve.CANCEL_AFTER_MINIMUM_S
                    ),
                )
            except RateLimitedError as exc:
                del self.state.attempts[position]
                throttles += 1
                hint = exc.retry_after
                episodes = self.creates.episodes
                self._limiter_event(lambda h=hint, t=sent: self.creates.on_throttled(h, sent_at=t))
                if self.shared_creates is not None and self.creates.episodes != episodes:
                    self.shared_creates.pause(self.creates.pause_remaining())
                    self.shared_creates.learned(self.creates.rate_per_minute)
                if throttles > _THROTTLE_RETRIES:
                    raise
                continue
            except OutcomeUnknownError as exc:
                if exc.status:
                    self.creates.on_passed(sent_at=sent)  # a 5xx got past the rate limit
                failures += 1
                outcome = await self.reconciler.find(attempt)
                del self.state.attempts[position]
                if outcome.record is not None:
                    self.state.in_flight[outcome.record["id"]] = key
                    return outcome.record, sent, sent_wall
                if outcome.unknown:
                    # Never sent blind: the marker stays and the next run re-attaches.
                    raise OutcomeUnknownError(f"{exc}; {outcome.reason}") from None
                # A sweep over the whole window proved nothing was created: sending is safe.
                if failures > self.retries:
                    raise TransientError(f"{exc} (no prediction was created)") from None
                await _backoff(failures)
                continue
            except TransientError as exc:
                del self.state.attempts[position]
                if exc.status:
                    self.creates.on_passed(sent_at=sent)
                failures += 1
                if failures > self.retries:
                    raise
                await _backoff(failures)
                continue
            except ReplicateAPIError as exc:
                del self.state.attempts[position]
                if is_payment_required(exc):
                    self.billing.trip(self.gate.token, exc)
                raise
            # Registered as in flight before the attempt is forgotten, so that a cancellation
            # at any point finds the prediction one way or the other.
            self.state.in_flight[reply.body["id"]] = key
            del self.state.attempts[position]
            self.reconciler.answered(attempt.sent_at, _utcnow(), reply.body)
            self._limiter_event(lambda: self.creates.observe(reply.headers))
            self._limiter_event(lambda t=sent: self.creates.on_success(sent_at=t))
            self.state.claimed.add(reply.body["id"])
            return reply.body, sent, sent_wall

    def _limiter_event(self, change: Callable[[], Any]) -> None:
        """Apply a limiter change; wake every waiting create if it voided their places."""
        epoch = self.creates.epoch
        change()
        if self.creates.epoch != epoch:
            self.limiter_changed.set()
            self.limiter_changed = anyio.Event()

    async def _list_page(self, query: PageQuery) -> Any:
        """One page of the account's predictions, for the reconcile sweep (paced reads)."""
        return await edge_fetch(self.edge, self._read)(query)

    async def cancel(self, prediction_id: str) -> dict | None:
        try:
            reply = await self._read(lambda: self.edge.cancel_prediction(prediction_id))
        except ReplicateAPIError:
            return None
        return reply.body

    async def localize(self, output: Any) -> Any:
        """Download output files into the cache's file store (without a cache: keep the URLs)."""
        if self.cache is None or output is None or isinstance(output, (int, float, bool)):
            return output
        try:
            return await self.cache.files.localize_output(
                output, self._download, max_bytes=self.downloads.max_file_bytes
            )
        except ValueError as exc:  # a data: output over the cap, or a malformed one
            raise DownloadError(str(exc)) from None

    async def _download(self, url: str) -> Downloaded:
        assert self.cache is not None
        incoming = self.cache.files.root / ".incoming"
        return await self._read(lambda: self.edge.download(url, incoming, self.downloads))

    def _cost(self, job: frames.Job, target: Target, record: dict) -> tuple[float, str]:
        ref = job.model
        parsed = job.ref or parse_model_ref(ref)  # planning parsed it already
        if target.model_name and parsed.owner is None:
            ref = f"{target.model_name}:{target.ident}"
        return cost_of(self.prices, ref, record)

    async def run_job(
        self, job: frames.Job, target: Target, key: str | None, pending: dict | None
    ) -> dict:
        """Run one row to its result row. Never raises for the row's own failures."""
        reservation = None
        entry: str | None = None  # this row's spend-ledger entry
        hold = Hold(None, self.timeout, False)
        sent, sent_wall = self.clock(), time.time()
        async with self.slots:
            if pending is None:
                if self.billing.stopped:
                    return self._finish_row(frames.error_row("error", self.billing.message()), None)
                reservation, entry, hold, reason = await self._admit(job, target)
                if reason is not None:
                    return self._finish_row(frames.error_row("skipped_budget", reason), None)
            record = None
            try:
                payload: dict | None = None
                while True:
                    held = pending is not None and is_held_elsewhere(pending, self.owner)
                    if held and key is not None:
                        # Another live process is running this very row: wait for its result.
                        shared, pending = await self._await_other_run(key)
                        if shared is not None:
                            await self.gate.release(entry)
                            self._settle(reservation, None)
                            return shared
                        continue
                    record = await self._reattach(pending, target) if pending else None
                    if record is None and reservation is None and (
                        self.budget.max_cost is not None or self.standing
                    ):
                        # A marker that led nowhere: this row is new spending after all.
                        reservation, entry, hold, reason = await self._admit(job, target)
                        if reason is not None:
                            if key is not None and self.writer is not None:
                                self.writer.clear(key)
                            return self._finish_row(frames.error_row("skipped_budget", reason), None)
                    if record is not None or key is None:
                        break
                    payload = await self.prepare_input(job.input)
                    # Written before sending: a run killed while the create is held still lets
                    # the next run find the prediction instead of paying twice. It is a lease:
                    # refused when another live run took the key meanwhile.
                    if await self._mark_pending(
                        key, "", job, target, sent_after=_utcnow(), sent_input=payload
                    ):
                        self.state.unsent.add(key)
                        break
                    shared, pending = await self._await_other_run(key)
                    if shared is not None:
                        await self.gate.release(entry)
                        self._settle(reservation, None)
                        return shared
                if record is None:
                    if payload is None:
                        payload = await self.prepare_input(job.input)
                    if entry is None:
                        # A marker's prediction provably does not exist: created afresh, and
                        # like every create it needs room under the standing budgets.
                        opened = await self._open_entry(job, target, hold)
                        if isinstance(opened, BudgetRefusal):
                            if key is not None and self.writer is not None:
                                self.writer.clear(key)
                            return self._finish_row(
                                frames.error_row("skipped_budget", str(opened)), None
                            )
                        entry = opened
                    record, sent, sent_wall = await self.create(
                        job.position, target, payload, key, cancel_after=hold.deadline_s
                    )
                    await self.gate.attach(entry, record["id"])
                else:
                    sent, sent_wall = self.clock(), time.time()
                    self.state.in_flight[record["id"]] = key
                    # Re-attached to another run's prediction: our entry is dropped if the
                    # ledger has one for it already, else it becomes the prediction's.
                    await self.gate.attach(entry, record["id"])
                if key is not None and record.get("status") not in _TERMINAL:
                    await self._mark_pending(key, record["id"], job, target)
                limit = hold.deadline_s
                deadline = None
                if limit is not None:
                    # Where Replicate enforces the deadline itself (Cancel-After, at least its
                    # minimum) it gets a moment to, so that `aborted` is seen and no cancel is
                    # sent; the reservation's cancel-latency share covers the grace.
                    enforced = limit >= reserve.CANCEL_AFTER_MINIMUM_S
                    deadline = sent + limit + (min(1.0, 0.05 * limit) if enforced else 0.0)
                record = await self.poller.wait(record, sent=sent, deadline=deadline)
                unfinished = record.get("status") not in _TERMINAL  # the deadline passed
                if unfinished:
                    with anyio.CancelScope(shield=True):
                        record = await self.cancel(record["id"]) or record
                # A prediction that finished just as it was canceled keeps its result. One that
                # Replicate canceled at our Cancel-After deadline timed out too.
                timed_out = record.get("status") != "succeeded" and (
                    unfinished
                    or (record.get("status") == "canceled" and limit is not None
                        and self.clock() >= sent + limit - 1.0)
                )
                self.state.in_flight.pop(record["id"], None)
                row = frames.prediction_row(record, latency_s=self.clock() - sent)
                row["cost_usd"], row["cost_basis"] = self._cost(job, target, record)
                apply_final_status(row, record, timed_out=timed_out, timeout=limit)
                self._learn_predict_time(job, record)
                if row["status"] == "succeeded" and not _is_streamed_text(record, row):
                    try:
                        row["output"] = await self.localize(row["output"])
                    except ReplicateAPIError as exc:
                        row.update(status="error", error=f"output files could not be downloaded: {exc}")
                        if key is not None:
                            # Paid for: the next run re-attaches and downloads again (Replicate
                            # keeps the files for an hour) instead of creating it anew.
                            await self._mark_pending(key, record["id"], job, target)
                            key = None
                await self.gate.finish(
                    entry, record, row, model=target.model_name or job.model,
                    version=target.identity,
                )
                entry = None
                self._settle(reservation, row["cost_usd"])
                reservation = None
                if key is not None:
                    self._store(key, job, target, record, row)
                return self._finish_row(row, sent_wall)
            except AuthenticationError:
                if record is None:  # a 401 creates nothing
                    with anyio.CancelScope(shield=True):
                        await self.gate.release(entry)
                raise
            except ReplicateAPIError as exc:
                if record is None and isinstance(exc, OutcomeUnknownError):
                    # Something may have been created and billed: keep the reservation counted
                    # and the marker, so the next run re-attaches instead of paying twice.
                    self.gate.leave_open(entry)
                    self._settle(reservation, math.nan)
                    error = (
                        "create outcome unknown; the intent marker is kept, the next run "
                        f"re-attaches ({exc})"
                    )
                    return self._finish_row(frames.error_row("error", error), sent_wall)
                if record is None:
                    # The create was refused: nothing was created, nothing is owed.
                    await self.gate.release(entry)
                    self._settle(reservation, None)
                    if key is not None and self.writer is not None:
                        self.writer.clear(key)  # nothing was created: the next run starts afresh
                    error = self.billing.message() if exc.status == 402 else str(exc)
                    return self._finish_row(frames.error_row("error", error), sent_wall)
                self.gate.leave_open(entry)  # it exists and may be billing: counted as reserved
                self._settle(reservation, None)
                # The prediction exists but we lost track of it; its marker stays, so the next
                # run re-attaches instead of paying again.
                error = f"lost track of prediction {record['id']} ({exc}); re-run to re-attach"
                return self._finish_row(
                    frames.error_row("error", error, prediction_id=record["id"]), sent_wall
                )
            except BaseException:
                # Interrupted: a ledger entry whose create was never sent (not unanswered in
                # `state.attempts`, no record) is dropped, so it does not hold the standing
                # budget for the rest of the process's life; any other stays counted.
                if record is None and entry is not None and job.position not in self.state.attempts:
                    with anyio.CancelScope(shield=True):
                        await self.gate.release(entry)
                raise

    async def _reattach(self, pending: dict, target: Target) -> dict | None:
        """The prediction a previous run started for this row; None when it provably does not
        exist (a 404, or a full sweep found nothing). Raises OutcomeUnknownError when that
        cannot be told (the service could not be asked): the row must not be sent."""
        prediction_id = pending.get("prediction_id")
        if prediction_id:
            try:
                record = (await self._read(lambda: self.edge.get_prediction(prediction_id))).body
            except NotFoundError:
                return None
            except AuthenticationError:
                raise
            except ReplicateAPIError as exc:
                raise OutcomeUnknownError(f"prediction {prediction_id} could not be read: {exc}") from None
            self.state.claimed.add(record["id"])
            return record
        meta = pending.get("meta") or {}
        # "sent_after" is what markers written before this version hold (already minus skew).
        sent_at = parse_time(meta.get("sent_at") or meta.get("sent_after"))
        sent_input = meta.get("sent_input")
        if sent_at is None or not isinstance(sent_input, dict):
            return None
        outcome = await self.reconciler.find(Attempt(target.kind, target.ident, sent_input, sent_at))
        if outcome.unknown:
            raise OutcomeUnknownError(outcome.reason)
        return outcome.record

    def _prior(self, job: frames.Job) -> float | None:
        if self.budget.max_cost is None:
            return None
        return expected_cost(self.prices, job.model, job.input)

    def _hold(self, job: frames.Job, standing_left: float | None = None) -> Hold:
        """The row's worst-case reservation and server-side deadline (`replibatch._engine.reserve`):
        under ``max_cost`` or a standing budget (`standing_left`: what the tightest one has
        left), else none."""
        if self.budget.max_cost is None and not self.standing:
            return Hold(None, self.timeout, False)
        lefts = [v for v in (self.budget.left, standing_left) if v is not None]
        return plan_hold(
            self.prices,
            job.model,
            job.input,
            timeout=self.timeout,
            seen=self.seen.get(job.model),
            budget_left=min(lefts) if lefts else None,
        )

    async def _open_entry(
        self, job: frames.Job, target: Target, hold: Hold
    ) -> str | BudgetRefusal | None:
        """Reserve the row's spend-ledger entry at its worst case (else its expected cost):
        its id, the standing budget's refusal, or None without a ledger."""
        worst = hold.usd
        if worst is None:
            worst = expected_cost(self.prices, job.model, job.input)
        return await self.gate.reserve(
            worst, model=target.model_name or job.model, version=target.identity
        )

    async def _admit(
        self, job: frames.Job, target: Target
    ) -> tuple[Any, str | None, Hold, str | None]:
        """Room for the row under ``max_cost`` and the standing budgets: ``(run reservation,
        ledger entry, hold, None)``, or a skip reason last. A standing budget's refusal waits
        while this run's own rows in flight may free room, re-planning the hold each time
        (finished rows shorten the worst case); then the refusal's text is the reason."""
        while True:
            reservation, hold = await self._reserve(job)
            if reservation is None:
                reason = self.budget.skip_reason(job.model, self._prior(job), worst=hold.usd)
                return None, None, hold, reason
            probe = self._is_probe(job, hold)
            if probe and self.probes.get(job.model) in self.gate.open_ids:
                # Under a standing budget a probe is reserved at nearly all that is left, so a
                # second one would get a deadline too short to finish: wait for its figure.
                if reservation is not None:
                    self.budget.release(reservation)
                await self.budget_changed.wait()
                continue
            opened = await self._open_entry(job, target, hold)
            if not isinstance(opened, BudgetRefusal):
                if probe and opened is not None:
                    self.probes[job.model] = opened
                return reservation, opened, hold, None
            # Handed back without waking others: a refused row waking refused rows would spin.
            if reservation is not None:
                self.budget.release(reservation)
            if self.gate.open_entries <= 0:
                return None, None, hold, str(opened)
            await self.budget_changed.wait()

    def _is_probe(self, job: frames.Job, hold: Hold) -> bool:
        """True for a row whose worst case exists only because a standing budget sized its
        deadline (per-second model, no timeout, no predict time seen or typical)."""
        if not self.standing or self.budget.max_cost is not None or hold.usd is None:
            return False
        unsized = plan_hold(
            self.prices, job.model, job.input, timeout=self.timeout,
            seen=self.seen.get(job.model), budget_left=None,
        )
        return unsized.usd is None

    async def _reserve(self, job: frames.Job) -> tuple[Any, Hold]:
        """A budget reservation for this row, waiting while rows in flight may free room."""
        prior = self._prior(job)
        while True:
            standing_left = await self.gate.left() if self.standing else None
            hold = self._hold(job, standing_left)  # re-planned: finished rows teach the deadline
            reservation = self.budget.try_start(job.model, prior, worst=hold.usd)
            if reservation is not None:
                return reservation, hold
            if not self.budget.worth_waiting(job.model, prior, worst=hold.usd):
                last = None
                if self.timeout is None:
                    last = last_chance_hold(
                        self.prices, job.model, job.input, seen=self.seen.get(job.model),
                        budget_left=self.budget.left,
                    )
                if last is not None:
                    reservation = self.budget.try_start(job.model, prior, worst=last.usd)
                    if reservation is not None:
                        return reservation, last
                return None, hold
            await self.budget_changed.wait()

    def _learn_predict_time(self, job: frames.Job, record: dict) -> None:
        metrics = record.get("metrics") or {}
        seconds = metrics.get("predict_time") if isinstance(metrics, dict) else None
        if isinstance(seconds, (int, float)) and seconds >= 0:
            self.seen.setdefault(job.model, Seen()).add(float(seconds), work_size(job.input))

    def _settle(self, reservation: Any, cost: float | None) -> None:
        """Close a reservation (None cost: nothing was created) and wake rows waiting on budget."""
        if reservation is None:
            return
        if cost is None:
            self.budget.release(reservation)
        else:
            self.budget.finish(reservation, cost)
        self.budget_changed.set()
        self.budget_changed = anyio.Event()

    def _finish_row(self, row: dict, sent_wall: float | None) -> dict:
        """Stamp the client-clock times of the row (None: nothing was sent) for the timeline."""
        if sent_wall is not None:
            row["submitted_at"] = sent_wall
            row["completed_at"] = time.time()
        return row

    async def _mark_pending(
        self,
        key: str,
        prediction_id: str,
        job: frames.Job,
        target: Target,
        *,
        sent_after: datetime | None = None,
        sent_input: dict | None = None,
    ) -> bool:
        """Write the row's marker. The one written before the create (`sent_after` given) is a
        lease claim: False when another live run holds the key (nothing was written)."""
        assert self.writer is not None
        meta: dict[str, Any] = {"model": job.model, "version": target.identity}
        if sent_after is not None:
            meta["sent_at"] = sent_after.isoformat()
            meta["sent_input"] = sent_input
        # Only the marker written before the create must be on disk before we go on.
        return await self.writer.mark(key, prediction_id, meta, durable=sent_after is not None)

    async def _await_other_run(self, key: str) -> tuple[dict | None, dict | None]:
        """Wait while another live run holds `key`'s marker. Returns ``(row, None)`` when its
        result arrived in the cache, ``(None, marker)`` when its owner died (re-attach to it),
        ``(None, None)`` when the marker went away without a result (the row is free)."""
        assert self.cache is not None
        while True:
            await anyio.sleep(LEASE_POLL_S)
            entry = await anyio.to_thread.run_sync(self.cache.get, key)
            if entry is not None:
                return _cached_row(entry), None
            marker = await anyio.to_thread.run_sync(self.cache.pending, key)
            if marker is None:
                return None, None
            if not is_held_elsewhere(marker, self.owner):
                return None, marker

    def _store(self, key: str, job: frames.Job, target: Target, record: dict, row: dict) -> None:
        """Keep a succeeded result; for anything else only forget the pending marker, so the
        next run tries the row again instead of re-attaching to a failure."""
        assert self.writer is not None
        if row.get("status") != "succeeded":
            self.writer.clear(key)
            return
        entry = CacheEntry(
            model=job.model,
            version=target.identity,
            input=_input_for_storage(job.input),
            sample=job.sample,
            record=record,
            row={k: v for k, v in row.items() if k not in _UNSTORED},
        )
        self.writer.put(key, entry)

    # -- cleanup on interrupt ----------------------------------------------------------------

    async def cancel_everything(self) -> StopReport:
        """Cancel every prediction this run started and has not seen finish, and those its
        unanswered creates made (one sweep): shielded, bounded by `_CLEANUP_SECONDS`. Markers
        of confirmed cancels are dropped so the next run creates those rows afresh."""

        unpaced_page = edge_fetch(self.edge)  # cleanup reads straight from the edge, unpaced

        async def cancel_now(pid: str) -> Any:
            return (await self.edge.cancel_prediction(pid)).body

        unanswered = [
            (attempt, self.state.attempt_keys.get(position))
            for position, attempt in self.state.attempts.items()
        ]
        report = await stop_everything(
            cancel=cancel_now,
            sweep=lambda attempts: self.reconciler.sweep(attempts, unpaced_page),
            in_flight=dict(self.state.in_flight),
            unanswered=unanswered,
            deadline=_CLEANUP_SECONDS,
        )
        if self.writer is not None:
            # Confirmed cancels, and rows whose create was never sent: nothing to re-attach to.
            for key in [*report.cleared, *self.state.unsent]:
                self.writer.clear(key)
        self.stop_report = report
        return report


async def arun(
    df: pd.DataFrame,
    model: str | None = None,
    inputs: list[str] | dict[str, str] | None = None,
    *,
    concurrency: int | None = None,
    rate_limit: float | None = None,
    cache: Any = True,
    refresh: bool = False,
    max_cost: float | None = None,
    timeout: float | None = None,
    retries: int = 5,
    progress: bool | None = None,
    live: bool | None = None,
    api_token: str | None = None,
    base_url: str | None = None,
    client: Any = None,
    hardware: dict[str, str] | None = None,
    prices: Any = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
    files: list[str] | str | None = None,
) -> pd.DataFrame:
    """Run every row of ``df`` as a Replicate prediction; return ``df`` plus result columns.

    See ``replibatch.run`` for the arguments. Raises ConfigurationError (a ValueError) for an
    invalid call before anything is sent, AuthenticationError when the token is refused.
    """
    concurrency = _validate_options(concurrency, rate_limit, timeout, retries, max_cost)
    if api_token is not None and not isinstance(api_token, str):
        # Several tokens (a list, failover across accounts) are not supported yet (issue 16).
        raise ConfigurationError(
            f"api_token must be one token (a str), got {type(api_token).__name__}"
        )
    downloads = DownloadLimits(max_file_bytes, download_timeout)
    with gc_paused(len(df)):
        plan = frames.plan_jobs(df, model=model, inputs=inputs, files=files)
    table = PriceTable.default().with_overrides(prices=prices, hardware=hardware)
    store = await anyio.to_thread.run_sync(open_cache, cache)
    gate, standing = await anyio.to_thread.run_sync(
        lambda: _spend_gate(store, resolve_token(api_token, client))
    )
    started = time.monotonic()
    edge = Edge(
        api_token=api_token, base_url=base_url, client=client, max_connections=concurrency + 16
    )
    engine = _Engine(
        edge=edge,
        cache=store,
        refresh=refresh,
        concurrency=concurrency,
        rate_limit=rate_limit,
        timeout=timeout,
        retries=retries,
        budget=Budget(max_cost),
        prices=table,
        progress=progress,
        downloads=downloads,
        live=live,
        gate=gate,
        standing=standing,
    )
    run_started(engine.owner)
    try:
        rows = await _execute(engine, plan)
    except BaseException as exc:
        if engine.bar is not None:
            engine.bar.close()
        real = _unwrap(exc)
        if real is exc:
            raise
        raise real from None
    finally:
        run_ended(engine.owner)
        with anyio.CancelScope(shield=True):
            await edge.aclose()
    with gc_paused(len(rows)):
        result = frames.assemble(df, plan, rows)
    # Client-clock epoch seconds of each row's submit and result, for the run's timeline plot.
    for column in frames.TIMELINE_COLUMNS:
        # numpy reads None as NaN in a float array: cached and never-sent rows have no times.
        result[column] = np.array([row.get(column) if row else None for row in rows], dtype=float)
    # Each row's cache key (None when it could not be keyed): ratings are stored under it.
    result[frames.CACHE_KEY_COLUMN] = pd.Series(
        [row.get(frames.CACHE_KEY_COLUMN) if row else None for row in rows],
        index=result.index, dtype=object,
    )
    summary = RunSummary(summarize(result, time.monotonic() - started))
    summary["invalid"] = engine.state.invalid
    summary["create_rate_per_minute"] = engine.creates.ceiling_per_minute
    summary["create_rate_learned_per_minute"] = engine.creates.rate_per_minute
    summary["throttle_episodes"] = engine.creates.episodes
    summary["throttled"] = engine.creates.refusals
    summary["throttled_after_first_episode"] = engine.creates.refusals_after_first
    summary["poll"] = dataclasses.asdict(engine.poller.stats)
    summary["shared"] = engine.state.shared
    summary["spend_by_token"] = dict(engine.gate.spent_by_token)
    if engine.billing.stopped:
        summary["stopped"] = engine.billing.message()
    if engine.bar is not None:
        engine.bar.finish(summary)
    result.attrs["replibatch"] = summary
    return result


def _spend_gate(store: ResultCache | None, token: str | None) -> tuple[SpendGate, bool]:
    """The run's ledger gate (the ledger of the cache directory; with ``cache=False`` the
    default one, so standing budgets still hold) and whether a standing budget applies.
    Reservations left by processes that died are released first. Blocking: call in a thread.
    Raises ConfigurationError when the ledger cannot be opened."""
    ledger = ledger_for(store if store is not None else True)
    ledger.release_dead()
    budgets = budgets_from_env()
    return SpendGate.for_token(ledger, token, budgets), bool(budgets or ledger.budgets())


async def _execute(engine: _Engine, plan: frames.Plan) -> list[dict]:
    jobs = plan.jobs
    rows: list[dict | None] = [None] * len(jobs)
    distinct = {job.model for job in jobs}
    targets: dict[str, Target | ReplicateAPIError] = {}
    keys: list[str | None] = [None] * len(jobs)

    # Pinned versions key the cache without a request; others need resolving first.
    needs_network = any(parse_model_ref(m).kind != "version" for m in distinct)
    if needs_network:
        engine.edge.require_token()
    targets = await engine.resolve(distinct)

    # Files first: a string the schema calls a file is keyed (and sent) by its content. The
    # rest of the schema is checked below, only for the rows the cache cannot serve. Pinned
    # "owner/name:version" rows are keyed before their schema is read (only rows the cache
    # lacks need it): their files are promoted, and they are keyed again, once it is known.
    late = {m for m in distinct if (r := parse_model_ref(m)).kind == "version" and r.owner}
    late_rows: list[int] = []
    for i, job in enumerate(jobs):
        target = targets[job.model]
        if isinstance(target, ReplicateAPIError):
            rows[i] = frames.error_row("error", f"{job.model}: {target}")
            continue
        if job.model in late:
            late_rows.append(i)
        _promote(engine, job, target, rows, i)

    pending: dict[int, dict] = {}
    # Keyed with or without a cache: identical jobs share one prediction either way.
    await _lookup(engine, jobs, targets, keys, rows, range(len(jobs)))
    late_misses = [i for i in late_rows if rows[i] is None]
    if late_misses and engine.edge.has_token:
        for model in {jobs[i].model for i in late_misses}:
            target = targets[model]
            assert isinstance(target, Target)
            schema = await engine._version_schema(target.model_name, target.ident)
            targets[model] = replace(target, schema=schema)
        rekey = []
        for i in late_misses:
            job = jobs[i]
            pinned = targets[job.model]
            assert isinstance(pinned, Target)
            _promote(engine, job, pinned, rows, i)
            if rows[i] is None and keys[i] is not None:
                key = cache_key(pinned.identity, job.input, job.sample)
                if key != keys[i]:  # a path became a file: it is keyed by its content
                    keys[i] = key
                    rekey.append(i)
        if rekey:
            await _lookup(engine, jobs, targets, keys, rows, rekey)
    if engine.cache is not None:
        misses = [keys[i] for i in range(len(jobs)) if keys[i] is not None and rows[i] is None]
        if misses:
            found = await anyio.to_thread.run_sync(engine.cache.pending_many, misses)
            for i, key in enumerate(keys):
                if key in found and rows[i] is None:
                    pending[i] = found[key]
    for i, job in enumerate(jobs):
        if rows[i] is None:
            # A row with a marker was sent by an earlier run: it re-attaches, never refused.
            _shape(engine, job, targets[job.model], rows, i, refuse=i not in pending)  # type: ignore[arg-type]
    engine.state.cached = sum(1 for r in rows if r is not None and r.get("cached"))

    todo = [i for i in range(len(jobs)) if rows[i] is None]
    groups = group_identical(todo, keys)
    engine.state.shared = groups.shared
    run_keys = keys if engine.cache is not None else [None] * len(jobs)
    if todo:
        engine.edge.require_token()
    bar = engine.bar = open_progress(
        len(jobs), len(jobs) - len(todo), progress=engine.progress_wanted, live=engine.live_wanted
    )
    writer = engine.writer
    try:
        async with anyio.create_task_group() as outer:
            if writer is not None:
                outer.start_soon(writer.run)
                outer.start_soon(writer.beat)
            outer.start_soon(engine.poller.run)
            async with anyio.create_task_group() as tg:
                for i in groups.leaders:
                    job = jobs[i]
                    tg.start_soon(
                        _run_into, engine, rows, i, job, targets[job.model], run_keys[i],
                        pending.get(i), bar,
                    )
            engine.poller.close()
            if writer is not None:
                writer.close()
    except BaseException:
        await engine.cancel_everything()
        if writer is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_SECONDS):
                await writer.flush()  # keep every result that arrived before the interrupt
        raise
    for leader, followers in groups.followers.items():
        for i in followers:
            row = rows[i] = shared_row(rows[leader] or {}, leader)
            if bar is not None:
                bar.tick(row, jobs[i].input)
    # Identical jobs share a row's values and also its key: each row carries the key it has.
    for i, key in enumerate(keys):
        if rows[i] is not None:
            rows[i][frames.CACHE_KEY_COLUMN] = key  # type: ignore[index]
    return [row for row in rows]  # type: ignore[misc]


def _refuse(engine: _Engine, rows: list, i: int, problems: list[str]) -> None:
    rows[i] = frames.error_row("error", "invalid input: " + "; ".join(problems))
    engine.state.invalid += 1


def _promote(engine: _Engine, job: frames.Job, target: Target, rows: list, i: int) -> None:
    """Turn the paths of the schema's file inputs into files (before keying the row)."""
    promoted, problems = promote_files(job.input, target.schema)
    if promoted is not job.input:
        job.input = dict(promoted)
    if problems:
        _refuse(engine, rows, i, problems)


def _shape(
    engine: _Engine, job: frames.Job, target: Target, rows: list, i: int, *, refuse: bool = True
) -> None:
    """Shape the job's input for its schema; a row the schema refuses ends ``error`` here."""
    job.input, problems = shape_input(job.input, target.schema)
    if problems and refuse:
        _refuse(engine, rows, i, problems)


async def _lookup(
    engine: _Engine, jobs: list, targets: dict, keys: list, rows: list, positions: Any
) -> None:
    """Key the rows at `positions` still open and fill in those the cache holds (if any)."""
    with gc_paused(len(jobs)):
        for i in positions:
            if rows[i] is None and keys[i] is None:
                job = jobs[i]
                keys[i] = cache_key(targets[job.model].identity, job.input, job.sample)
    wanted = [keys[i] for i in positions if keys[i] is not None and rows[i] is None]
    if engine.cache is None or engine.refresh or not wanted:
        return
    hits = await anyio.to_thread.run_sync(engine.cache.get_many, wanted)
    for i in positions:
        if keys[i] is not None and rows[i] is None:
            entry = hits.get(keys[i])
            if entry is not None:
                rows[i] = _cached_row(entry)


async def _run_into(engine, rows, i, job, target, key, pending, bar) -> None:  # noqa: ANN001
    row = await engine.run_job(job, target, key, pending)
    rows[i] = row
    if bar is not None:
        bar.tick(row, job.input)


_cleanups: list[threading.Event] = []


def _finish_cleanup_at_exit(done: threading.Event) -> None:
    """A run interrupted while its cancels were still going: the user has control back, and the
    interpreter's exit waits (bounded) for those cancels, so a script's Ctrl-C still stops the
    billing instead of killing the worker thread mid-way."""
    if not _cleanups:
        atexit.register(lambda: [event.wait(_CLEANUP_SECONDS + 5) for event in _cleanups])
    _cleanups.append(done)


def run(df: pd.DataFrame, model: str | None = None, inputs: Any = None, **options: Any) -> pd.DataFrame:
    """Run every row of ``df`` as a Replicate prediction and return ``df`` plus result columns.

    Works in scripts and inside a running event loop (Jupyter): the run gets its own loop in a
    worker thread. Ctrl-C (or the notebook's stop button) cancels the predictions in flight on
    Replicate (those whose create was unanswered too, found by one sweep), keeps what finished
    in the cache, and re-raises KeyboardInterrupt within about 4 s whatever the number in
    flight; cancels still going continue in the background (and a script's exit waits for
    them). A confirmed cancel drops the row's marker, so the next run creates it afresh.

    Options beyond ``arun``'s common ones: ``max_file_bytes`` (default 4 GiB) caps each output
    file, ``download_timeout`` (default 1800 s) bounds each file's whole download; a file over
    either fails its row ``error`` and keeps the marker, so a re-run (with larger limits)
    re-attaches and downloads without paying again. With ``max_cost``, every prediction is
    reserved at its worst case and gets a ``Cancel-After`` deadline (see README "Cost"); the same
    holds under a standing budget (``rb.set_budget``, ``REPLIBATCH_DAILY_BUDGET``...), checked
    in the spend ledger before every create, across processes: a row it refuses ends
    ``skipped_budget`` naming the budget and what is left. Every prediction created is recorded
    once in the ledger (``rb.spend()``; the token's fingerprint only). A 402 (payment required)
    stops the run's creates: the rows not created end ``error`` saying what to do (README "Spend").

    Money guarantees (README "How it talks to Replicate"): a row's prediction is never created
    twice; a create whose reply was lost is reconciled by one sweep of the account's
    predictions; when that cannot be completed the row ends ``error`` ("create outcome
    unknown; the intent marker is kept, the next run re-attaches") instead of being re-sent.

    Raises ConfigurationError (a ValueError) for an invalid call, before anything is sent.
    """
    box: dict[str, Any] = {}
    ready = threading.Event()
    done = threading.Event()

    async def main() -> None:
        with anyio.CancelScope() as scope:
            box["scope"] = scope
            box["token"] = anyio.lowlevel.current_token()
            ready.set()
            box["result"] = await arun(df, model, inputs, **options)

    def worker() -> None:
        try:
            anyio.run(main, backend="asyncio")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc
        finally:
            ready.set()
            done.set()

    threading.Thread(target=worker, name="replibatch-run", daemon=True).start()
    try:
        # Event.wait, not Thread.join: a KeyboardInterrupt inside join() can leave the thread
        # looking finished while it still runs (a known CPython bug before 3.12).
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        ready.wait()
        if "scope" in box and not done.is_set():
            try:
                anyio.from_thread.run_sync(box["scope"].cancel, token=box["token"])
            except RuntimeError:
                pass  # the loop finished meanwhile
        if not done.wait(_RETURN_AFTER_INTERRUPT):
            _finish_cleanup_at_exit(done)
        raise
    if "error" in box:
        raise box["error"]
    if "result" not in box:
        raise KeyboardInterrupt("the run was canceled")
    return box["result"]
