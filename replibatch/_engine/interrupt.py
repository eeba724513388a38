"""Stopping a run (Ctrl-C, the notebook's stop button, an outer timeout): cancel what it started.

On interrupt every prediction the run started and has not seen finish is canceled on Replicate,
including those whose create was sent but not answered (a create held by ``Prefer: wait`` is
unanswered for up to 60 s): one reconcile sweep finds all of those at once. Cancels go out
together, straight to the edge, not behind the read pacing that polling uses, and the whole
cleanup is bounded by a deadline so the user gets control back in seconds whatever the number
in flight.

A cancel the service confirms (the reply's status is terminal and not ``succeeded``) returns the
row's key in `StopReport.cleared`: the caller drops its marker, so the next run creates the row
afresh instead of re-attaching to a canceled prediction. A prediction that finished meanwhile,
or whose cancel was not confirmed, keeps its marker (the next run re-attaches to it), as does an
unanswered create the sweep could not account for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from replibatch._engine.reconcile import Attempt, Outcome
from replibatch.errors import RateLimitedError, ReplicateAPIError

__all__ = ["StopReport", "stop_everything"]

_FINAL = frozenset({"failed", "canceled", "aborted"})  # confirmed stopped, nothing to keep


@dataclass
class StopReport:
    """What cleanup did: predictions canceled (confirmed), keys whose markers may go, and
    predictions that could not be confirmed stopped."""

    canceled: int = 0
    cleared: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    timed_out: bool = False


async def stop_everything(
    *,
    cancel: Callable[[str], Awaitable[Any]],
    sweep: Callable[[list[Attempt]], Awaitable[dict[Attempt, Outcome]]],
    in_flight: dict[str, str | None],
    unanswered: list[tuple[Attempt, str | None]],
    deadline: float,
    parallel: int = 12,
) -> StopReport:
    """Cancel every prediction in `in_flight` (id -> cache key) and every one `unanswered`
    creates made (found by one `sweep`), within `deadline` seconds. `cancel(id)` returns the reply's body (a
    prediction record) or raises ReplicateAPIError. Never raises for the service's failures;
    shielded from the caller's cancellation."""
    report = StopReport()
    targets: dict[str, str | None] = dict(in_flight)
    pending_ids = set(targets)
    # A few at a time: hundreds queued at once in httpx's pool come back slower than a steady
    # dozen (measured in bench/money.py: 512 cancels ~3.5 s at 8-16 wide, 6-20 s all at once).
    gate = anyio.CapacityLimiter(parallel)

    async def cancel_one(pid: str, key: str | None) -> None:
        for attempt in range(5):
            try:
                async with gate:
                    body = await cancel(pid)
            except RateLimitedError as exc:
                await anyio.sleep(min(exc.retry_after or 0.2 * (attempt + 1), 1.0))
                continue
            except ReplicateAPIError:
                return
            status = (body or {}).get("status")
            if status in _FINAL:
                report.canceled += 1
                pending_ids.discard(pid)
                if key is not None:
                    report.cleared.append(key)
            elif status == "succeeded":
                pending_ids.discard(pid)  # finished first: its marker lets the next run fetch it
            return

    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(deadline) as scope:
            async with anyio.create_task_group() as tg:
                for pid, key in targets.items():
                    tg.start_soon(cancel_one, pid, key)
                if unanswered:
                    outcomes = await sweep([a for a, _ in unanswered])
                    for attempt, key in unanswered:
                        outcome = outcomes[attempt]
                        if outcome.record is not None and outcome.record["id"] not in targets:
                            pid = outcome.record["id"]
                            targets[pid] = key
                            pending_ids.add(pid)
                            tg.start_soon(cancel_one, pid, key)
                        elif outcome.proven_absent and key is not None:
                            report.cleared.append(key)  # nothing was created for it
        report.timed_out = scope.cancelled_caught
    report.unconfirmed = sorted(pending_ids)
    return report
