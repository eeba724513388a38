"""Reconcile windows from the server's clock: bounded by causality, narrow once creates answered."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import anyio

from replibatch._engine.pager import PageQuery
from replibatch._engine.reconcile import Attempt, Reconciler
from replibatch._engine.server_clock import CLOCK_SKEW, MARGIN, ServerClock

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
AHEAD = timedelta(seconds=7.25)  # the server's clock runs 7.25 s ahead of ours
S = timedelta(seconds=1)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_answered_creates_bound_the_offset_from_both_sides():
    clock = ServerClock()
    assert clock.window(NOW, NOW + S).start == NOW - CLOCK_SKEW  # nothing known yet: the skew
    assert clock.window(NOW, NOW + S).end is None
    # Two creates: stamped 0.1 s after the send and 0.05 s before the reply (server clock).
    clock.observe(NOW, NOW + 0.3 * S, NOW + AHEAD + 0.1 * S)
    clock.observe(NOW + 2 * S, NOW + 2.2 * S, NOW + 2.15 * S + AHEAD)
    window = clock.window(NOW + 10 * S, NOW + 12 * S)
    # d is in [max(created - received), min(created - sent)] = [7.2, 7.35] s.
    assert window.start == NOW + 10 * S + AHEAD - 0.05 * S - MARGIN
    assert window.end == NOW + 12 * S + AHEAD + 0.1 * S + MARGIN
    # Whatever the true offset within those bounds, a prediction made by a create sent at 10 s
    # and given up at 12 s lies inside.
    assert window.start <= NOW + 10 * S + AHEAD and window.end > NOW + 12 * S + AHEAD


def test_a_clock_that_jumped_falls_back_to_the_skew():
    clock = ServerClock()
    clock.observe(NOW, NOW + S, NOW + AHEAD)
    clock.observe(NOW + 5 * S, NOW + 6 * S, NOW + 5 * S)  # 7 s back: the bounds contradict
    assert not clock.known and clock.window(NOW, NOW).start == NOW - CLOCK_SKEW
    clock.observe(NOW, NOW - S, NOW)  # a reply before its send is ignored, not a bound


def stamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


class Listing:
    """Predictions stamped on the server's clock; answers a filtered listing like the spec."""

    def __init__(self, records: list[dict]) -> None:
        self.records, self.queries = records, []

    async def __call__(self, query: PageQuery) -> dict:
        self.queries.append(query)
        after, before = stamp(query.created_after), stamp(query.created_before)
        hits = [r for r in self.records
                if after <= stamp(r["created_at"]) and (before is None or stamp(r["created_at"]) < before)]
        return {"results": hits, "next": None}


def test_a_sweep_lists_only_the_learned_window_and_still_finds_the_prediction():
    # 30 s of other predictions, 10 a second, stamped on the server's (ahead) clock.
    others = [{"id": f"o{i}", "input": {"n": -i}, "version": "v1",
               "created_at": iso(NOW - 30 * S + i * 0.1 * S + AHEAD)} for i in range(300)]
    ours = {"id": "mine", "input": {"n": 1}, "version": "v1",
            "created_at": iso(NOW + 0.4 * S + AHEAD)}  # made, but its reply was lost
    listing = Listing([*others, ours])
    reconciler = Reconciler(listing, set(), settle=0, clock=lambda: NOW + 2 * S)
    reconciler.answered(NOW - 5 * S, NOW - 4.8 * S, {"created_at": iso(NOW - 4.9 * S + AHEAD)})
    lost = Attempt("version", "v1", {"n": 1}, NOW + 0.3 * S)
    absent = Attempt("version", "v1", {"n": 2}, NOW + 0.5 * S)
    out = anyio.run(reconciler.sweep, [lost, absent])
    assert out[lost].record["id"] == "mine"
    assert out[absent].proven_absent  # the whole (narrow) window was read
    query = listing.queries[0]
    start = stamp(query.created_after)
    assert NOW + AHEAD - 2 * S < start <= NOW + 0.3 * S + AHEAD  # not 30 s back
    assert query.created_before is not None
