"""One row's life: admission, its lease on the cache key, create or re-attach, the wait, the
cancel at its deadline, cost, output files, and its result row. Never raises for the row's own
failures: those end the row ``error`` (or ``skipped_budget``), keeping its marker whenever a
prediction may exist, so the next run re-attaches instead of paying twice."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio

from replibatch._engine import reserve
from replibatch._engine.outcome import apply_final_status
from replibatch._engine.outputs import is_streamed_text
from replibatch._engine.reconcile import Attempt, parse_time
from replibatch._engine.result import Row
from replibatch._engine.target import Target
from replibatch._engine.tokenpool import MARKER_TOKEN
from replibatch._spend.cost import cost_of
from replibatch._spend.ledger import BudgetRefusal
from replibatch._store.markers import PendingMarker
from replibatch._table import frame as frames
from replibatch._table.frame import Job
from replibatch._table.refs import parse_model_ref
from replibatch.errors import AuthenticationError, NotFoundError, OutcomeUnknownError, ReplicateAPIError

if TYPE_CHECKING:
    from replibatch._engine.lanes import Lane
    from replibatch._engine.session import Engine

__all__ = ["TERMINAL", "run_job"]

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})


def _cost(engine: Engine, job: Job, target: Target, record: dict[str, Any]) -> tuple[float, str]:
    ref = job.model
    parsed = job.ref or parse_model_ref(ref)  # planning parsed it already
    if target.model_name and parsed.owner is None:
        ref = f"{target.model_name}:{target.ident}"  # a bare version id, named by its model
    return cost_of(engine.prices, ref, record)


def _finish_row(engine: Engine, row: Row, sent_wall: float | None) -> Row:
    """Stamp the client-clock times of the row (None: nothing was sent) for the timeline."""
    if sent_wall is not None:
        row.submitted_at = sent_wall
        row.completed_at = engine.clock.wall()
    return row


def _settled_row(engine: Engine, job: Job, target: Target, record: dict[str, Any], *, sent: float,
                 limit: float | None, timed_out: bool) -> Row:
    """The row of a finished (or canceled) prediction: its columns, cost and final status."""
    columns = frames.prediction_row(record, latency_s=engine.clock.monotonic() - sent)
    columns["cost_usd"], columns["cost_basis"] = _cost(engine, job, target, record)
    apply_final_status(columns, record, timed_out=timed_out, timeout=limit)
    return Row.from_columns(columns)


def _utc(engine: Engine) -> datetime:
    return datetime.fromtimestamp(engine.clock.wall(), timezone.utc)


async def reattach(
    engine: Engine, pending: PendingMarker, target: Target, lanes: list[Lane]
) -> dict[str, Any] | None:
    """The prediction a previous run started for this row; None when it provably does not
    exist (a 404, or a full sweep found nothing). Raises OutcomeUnknownError when that
    cannot be told (the service could not be asked): the row must not be sent. `lanes`: the
    tokens that can see it (`TokenPool.marker_lanes`): the one that created it, or for a create
    never answered, each token it may have been sent with."""
    prediction_id = pending.prediction_id
    if prediction_id:
        lane = lanes[0]
        try:
            record: dict[str, Any] = (
                await lane.reads(lambda: lane.edge.get_prediction(prediction_id))
            ).body
        except NotFoundError:
            return None
        except AuthenticationError:
            raise
        except ReplicateAPIError as exc:
            raise OutcomeUnknownError(f"prediction {prediction_id} could not be read: {exc}") from None
        engine.state.claimed.add(record["id"])
        engine.creator.adopt(record["id"], lane)
        return record
    meta = pending.meta
    # "sent_after" is what markers written before this version hold (already minus skew).
    sent_at = parse_time(meta.get("sent_at") or meta.get("sent_after"))
    sent_input = meta.get("sent_input")
    if sent_at is None or not isinstance(sent_input, dict):
        return None
    attempt = Attempt(target.kind, target.ident, sent_input, sent_at)
    for lane in lanes:  # each account that may hold it, until one does
        outcome = await lane.reconciler.find(attempt)
        if outcome.unknown:
            raise OutcomeUnknownError(outcome.reason)
        if outcome.record is not None:
            engine.creator.adopt(outcome.record["id"], lane)
            return outcome.record
    return None


async def run_job(
    engine: Engine, job: Job, target: Target, key: str | None, pending: PendingMarker | None
) -> Row:
    """Run one row to its result row. Never raises for the row's own failures."""
    admission, gate, leases = engine.admission, engine.gate, engine.leases
    reservation = None
    entry: str | None = None  # this row's spend-ledger entry
    hold = admission.unreserved()
    sent, sent_wall = engine.clock.monotonic(), engine.clock.wall()
    async with engine.slots:
        if pending is None:
            if engine.billing.stopped:
                return _finish_row(engine, Row.failed("error", engine.billing.message()), None)
            admitted = await admission.admit(job, target)
            reservation, entry, hold = admitted.reservation, admitted.entry, admitted.hold
            if admitted.reason is not None:
                return _finish_row(engine, Row.failed("skipped_budget", admitted.reason), None)
        record = None
        try:
            payload: dict[str, Any] | None = None
            while True:
                held = pending is not None and leases is not None and leases.held_elsewhere(pending)
                if held and key is not None and leases is not None:
                    # Another live process is running this very row: wait for its result.
                    shared, pending = await leases.await_other_run(key)
                    if shared is not None:
                        await gate.release(entry)
                        admission.settle(reservation, None)
                        return shared
                    continue
                readers = engine.pool.marker_lanes(pending.meta) if pending else []
                if isinstance(readers, str):
                    # Only the token that made it can see the prediction: the marker stays.
                    await gate.release(entry)
                    admission.settle(reservation, None)
                    return _finish_row(engine, Row.failed("error", f"cannot re-attach: {readers}"), None)
                record = await reattach(engine, pending, target, readers) if pending else None
                if record is None and reservation is None and admission.reserves:
                    # A marker that led nowhere: this row is new spending after all.
                    admitted = await admission.admit(job, target)
                    reservation, entry, hold = admitted.reservation, admitted.entry, admitted.hold
                    if admitted.reason is not None:
                        if key is not None and leases is not None:
                            leases.clear(key)
                        return _finish_row(engine, Row.failed("skipped_budget", admitted.reason), None)
                if record is not None or key is None or leases is None:
                    break
                payload = await engine.uploads.prepare(job.input)
                # Written before sending: a run killed while the create is held still lets
                # the next run find the prediction instead of paying twice. It is a lease:
                # refused when another live run took the key meanwhile.
                # It names every token the create may still go out with (several tokens).
                if await leases.mark(
                    key, "", job, target, sent_after=_utc(engine), sent_input=payload,
                    tokens=engine.pool.marker_meta(),
                ):
                    engine.state.unsent.add(key)
                    break
                shared, pending = await leases.await_other_run(key)
                if shared is not None:
                    await gate.release(entry)
                    admission.settle(reservation, None)
                    return shared
            if record is None:
                if payload is None:
                    payload = await engine.uploads.prepare(job.input)
                if entry is None:
                    # A marker's prediction provably does not exist: created afresh, and
                    # like every create it needs room under the standing budgets.
                    opened = await admission.open_entry(job, target, hold)
                    if isinstance(opened, BudgetRefusal):
                        if key is not None and leases is not None:
                            leases.clear(key)
                        return _finish_row(engine, Row.failed("skipped_budget", str(opened)), None)
                    entry = opened
                record, sent, sent_wall = await engine.creator.create(
                    job.position, target, payload, key, cancel_after=hold.deadline_s
                )
                token = engine.creator.lane_of(record["id"]).fingerprint
                await gate.attach(entry, record["id"], token=token)
            else:
                sent, sent_wall = engine.clock.monotonic(), engine.clock.wall()
                engine.state.in_flight[record["id"]] = key
                token = engine.creator.lane_of(record["id"]).fingerprint
                # Re-attached to another run's prediction: our entry is dropped if the
                # ledger has one for it already, else it becomes the prediction's.
                await gate.attach(entry, record["id"], token=token)
            made_by = {MARKER_TOKEN: token}  # reads of it use that token, in this run and later
            if key is not None and leases is not None and record.get("status") not in TERMINAL:
                await leases.mark(key, record["id"], job, target, tokens=made_by)
            limit = hold.deadline_s
            deadline = None
            if limit is not None:
                # Where Replicate enforces the deadline itself (Cancel-After, at least its
                # minimum) it gets a moment to, so that `aborted` is seen and no cancel is
                # sent; the reservation's cancel-latency share covers the grace.
                enforced = limit >= reserve.CANCEL_AFTER_MINIMUM_S
                deadline = sent + limit + (min(1.0, 0.05 * limit) if enforced else 0.0)
            record = await engine.poller.wait(record, sent=sent, deadline=deadline)
            unfinished = record.get("status") not in TERMINAL  # the deadline passed
            if unfinished:
                with anyio.CancelScope(shield=True):
                    record = await engine.cancel(record["id"]) or record
            # A prediction that finished just as it was canceled keeps its result. One that
            # Replicate canceled at our Cancel-After deadline timed out too.
            timed_out = record.get("status") != "succeeded" and (
                unfinished
                or (record.get("status") == "canceled" and limit is not None
                    and engine.clock.monotonic() >= sent + limit - 1.0)
            )
            engine.state.in_flight.pop(record["id"], None)
            row = _settled_row(engine, job, target, record, sent=sent, limit=limit, timed_out=timed_out)
            admission.learn_predict_time(job, record)
            if row.status == "succeeded" and not is_streamed_text(record, row.output):
                try:
                    row.output = await engine.outputs.localize(row.output)
                except ReplicateAPIError as exc:
                    row.status, row.error = "error", f"output files could not be downloaded: {exc}"
                    if key is not None and leases is not None:
                        # Paid for: the next run re-attaches and downloads again (Replicate
                        # keeps the files for an hour) instead of creating it anew.
                        await leases.mark(key, record["id"], job, target, tokens=made_by)
                        key = None
            await gate.finish(
                entry, record, row.stored(), model=target.model_name or job.model,
                version=target.identity, token=token,
            )
            entry = None
            admission.settle(reservation, row.cost_usd)
            reservation = None
            if key is not None and leases is not None:
                leases.store(key, job, target, record, row)
            return _finish_row(engine, row, sent_wall)
        except AuthenticationError:
            if record is None:  # a 401 creates nothing
                with anyio.CancelScope(shield=True):
                    await gate.release(entry)
            raise
        except ReplicateAPIError as exc:
            if record is None and isinstance(exc, OutcomeUnknownError):
                # Something may have been created and billed: keep the reservation counted
                # and the marker, so the next run re-attaches instead of paying twice.
                gate.leave_open(entry)
                admission.settle(reservation, math.nan)
                error = (
                    "create outcome unknown; the intent marker is kept, the next run "
                    f"re-attaches ({exc})"
                )
                return _finish_row(engine, Row.failed("error", error), sent_wall)
            if record is None:
                # The create was refused: nothing was created, nothing is owed.
                await gate.release(entry)
                admission.settle(reservation, None)
                if key is not None and leases is not None:
                    leases.clear(key)  # nothing was created: the next run starts afresh
                error = engine.billing.message() if exc.status == 402 else str(exc)
                return _finish_row(engine, Row.failed("error", error), sent_wall)
            gate.leave_open(entry)  # it exists and may be billing: counted as reserved
            admission.settle(reservation, None)
            # The prediction exists but we lost track of it; its marker stays, so the next
            # run re-attaches instead of paying again.
            error = f"lost track of prediction {record['id']} ({exc}); re-run to re-attach"
            return _finish_row(
                engine, Row.failed("error", error, prediction_id=record["id"]), sent_wall
            )
        except BaseException:
            # Interrupted: a ledger entry whose create was never sent (not unanswered in
            # `state.attempts`, no record) is dropped, so it does not hold the standing
            # budget for the rest of the process's life; any other stays counted.
            if record is None and entry is not None and job.position not in engine.state.attempts:
                with anyio.CancelScope(shield=True):
                    await gate.release(entry)
            raise
