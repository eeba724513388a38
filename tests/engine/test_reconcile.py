"""Pure parts of issue 10: reconcile matching and sweeps, marker leases, worst-case holds."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import anyio
import pytest

from replibatch._engine.dedupe import group_identical, shared_row
from replibatch._engine.pager import PageQuery
from replibatch._engine.reconcile import CLOCK_SKEW, Attempt, Reconciler, match
from replibatch._engine.reserve import Seen, plan_hold
from replibatch._spend.cost import PriceTable
from replibatch._store.markers import (
    Owner,
    PendingMarker,
    encode,
    is_held_elsewhere,
    run_ended,
    run_started,
)
from replibatch.errors import TransientError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def record(rid: str, input: dict, *, model="x/y", version="v1", ago=0.0, **extra) -> dict:
    return {"id": rid, "input": input, "model": model, "version": version,
            "created_at": iso(NOW - timedelta(seconds=ago)), "status": "starting", **extra}


# -- match ----------------------------------------------------------------------------------------
def test_an_official_model_attempt_adopts_a_reply_naming_an_internal_model():
    attempt = Attempt("model", "meta/meta-llama-3-8b-instruct", {"prompt": "hi"}, NOW)
    internal = record("p1", {"prompt": "hi"}, model="replicate-internal/llama-3-8b-instruct-int8-triton",
                      version="dp-a557")
    assert match([attempt], [internal], set()) == {attempt: internal}


def test_version_attempts_need_their_version_and_take_theirs_first():
    by_version = Attempt("version", "v1", {"prompt": "hi"}, NOW)
    official = Attempt("model", "o/m", {"prompt": "hi"}, NOW)
    mine = record("p1", {"prompt": "hi"}, version="v1")
    other = record("p2", {"prompt": "hi"}, version="dp-x")
    claimed: set[str] = set()
    found = match([official, by_version], [mine, other], claimed)
    assert found[by_version]["id"] == "p1" and found[official]["id"] == "p2"
    assert claimed == {"p1", "p2"}
    # A different version, a different input, a claimed id or a record from before the window
    # (minus the skew margin) never match.
    assert match([by_version], [record("p3", {"prompt": "hi"}, version="v2")], set()) == {}
    assert match([by_version], [record("p4", {"prompt": "no"})], set()) == {}
    assert match([by_version], [record("p5", {"prompt": "hi"})], {"p5"}) == {}
    old = record("p6", {"prompt": "hi"}, ago=CLOCK_SKEW.total_seconds() + 5)
    assert match([by_version], [old], set()) == {}


def test_deployment_attempts_never_take_another_deployments_prediction():
    attempt = Attempt("deployment", "acme/prod", {"prompt": "hi"}, NOW)
    theirs = record("p1", {"prompt": "hi"}, deployment="acme/staging")
    ours = record("p2", {"prompt": "hi"}, deployment="acme/prod")
    assert match([attempt], [theirs, ours], set())[attempt]["id"] == "p2"


# -- sweeps -------------------------------------------------------------------------------------
class Pages:
    """A fake account listing: pages of records, optionally failing at one page."""

    def __init__(self, pages: list[list[dict]], fail_at: int | None = None) -> None:
        self.pages, self.fail_at, self.calls = pages, fail_at, []

    async def __call__(self, query: PageQuery):
        cursor = query.cursor_url
        index = 0 if cursor is None else int(cursor)
        self.calls.append((query.created_after, cursor))
        if index == self.fail_at:
            raise TransientError("boom", status=503)
        nxt = str(index + 1) if index + 1 < len(self.pages) else None
        return {"results": self.pages[index], "next": nxt}


def sweep(pages: Pages, attempts: list[Attempt]):
    return anyio.run(Reconciler(pages, set(), settle=0).sweep, attempts)


def test_a_sweep_pages_back_until_past_the_earliest_attempt():
    early = Attempt("version", "v1", {"n": 1}, NOW - timedelta(minutes=10))
    late = Attempt("version", "v1", {"n": 2}, NOW)
    pages = Pages([[record("a", {"n": 2})], [record("b", {"n": 9}, ago=300)],
                   [record("c", {"n": 1}, ago=600)], [record("d", {"n": 1}, ago=5000)]])
    out = sweep(pages, [early, late])
    assert out[late].record["id"] == "a" and out[early].record["id"] == "c"
    assert len(pages.calls) == 3  # stopped once both were found
    assert pages.calls[0][0] == iso(early.sent_at - CLOCK_SKEW)


def test_a_full_sweep_proves_absence_and_a_failed_one_leaves_it_unknown():
    attempt = Attempt("version", "v1", {"n": 1}, NOW)
    nothing = sweep(Pages([[record("a", {"n": 2})], [record("b", {"n": 3})]]), [attempt])
    assert nothing[attempt].proven_absent and not nothing[attempt].unknown
    failed = sweep(Pages([[record("a", {"n": 2})], []], fail_at=1), [attempt])
    assert failed[attempt].unknown and "could not be listed" in failed[attempt].reason
    # An expired prediction (input deleted) in the window could be ours: not proof of absence.
    erased = record("e", {}, data_removed=True)
    assert sweep(Pages([[erased]]), [attempt])[attempt].unknown


def test_concurrent_finds_share_one_sweep():
    pages = Pages([[record(f"p{i}", {"n": i}) for i in range(20)]])
    reconciler = Reconciler(pages, set(), settle=0.05)
    attempts = [Attempt("version", "v1", {"n": i}, NOW) for i in range(20)]
    found = {}

    async def main():
        async def one(a):
            found[a] = await reconciler.find(a)

        async with anyio.create_task_group() as tg:
            for a in attempts:
                tg.start_soon(one, a)

    anyio.run(main)
    assert all(found[a].record["id"] == f"p{i}" for i, a in enumerate(attempts))
    assert reconciler.sweeps == 1 and len(pages.calls) == 1


# -- leases -------------------------------------------------------------------------------------
def test_a_marker_is_a_lease_only_while_its_owner_lives():
    me = Owner.current()
    other_live = Owner(me.host, os.getppid(), "other")  # the parent process exists
    dead = Owner(me.host, 2**22 + 4321, "dead")
    remote = Owner("elsewhere", 1, "remote")
    now = time.time()

    def fresh(owner: Owner, age: float = 0.0) -> PendingMarker:
        return PendingMarker("", {}, now - age, owner)

    assert is_held_elsewhere(fresh(other_live), me, now=now)
    assert not is_held_elsewhere(fresh(dead), me, now=now)
    assert is_held_elsewhere(fresh(remote), me, now=now)
    assert not is_held_elsewhere(fresh(remote, age=120), me, now=now)  # heartbeat stopped
    assert not is_held_elsewhere(fresh(None), me, now=now)  # written before leases
    assert not is_held_elsewhere(fresh(me), me, now=now)
    sibling = Owner(me.host, me.pid, "sibling")  # another run in this very process
    run_started(sibling)
    assert is_held_elsewhere(fresh(sibling), me, now=now)
    run_ended(sibling)
    assert not is_held_elsewhere(fresh(sibling), me, now=now)


def test_one_marker_encoding_keeps_lone_surrogates():
    marker = PendingMarker("", {"sent_input": {"prompt": "bad \udc80 text"}}, 1.0, Owner("h", 1, "r"))
    data = encode(marker.to_json())
    import json

    back = PendingMarker.from_json(json.loads(data.decode("utf-8", "surrogatepass")))
    assert back == marker


# -- worst-case holds ---------------------------------------------------------------------------
def test_holds_bound_what_a_prediction_can_cost():
    table = PriceTable.default()
    t4 = 0.000225
    probe = plan_hold(table, "replibatch/tiny-llama", {"max_tokens": 10}, timeout=None, seen=None,
                      budget_left=0.01)
    assert probe.deadline_s == pytest.approx(0.01 / t4 / 1.1, rel=0.01)
    assert 0.0099 < probe.usd < 0.01
    seen = Seen()
    seen.add(2.0, 100)
    small = plan_hold(table, "replibatch/tiny-llama", {"max_tokens": 10}, timeout=None, seen=seen,
                      budget_left=1.0)
    big = plan_hold(table, "replibatch/tiny-llama", {"max_tokens": 400}, timeout=None, seen=seen,
                    budget_left=1.0)
    assert small.deadline_s == 12.0 and small.usd == pytest.approx(12.0 * t4 * 1.1) and small.bounded
    assert big.deadline_s == pytest.approx(6 * 2.0 * 4)  # scaled by the work asked for
    given = plan_hold(table, "replibatch/tiny-llama", {}, timeout=1.0, seen=None, budget_left=1.0)
    assert given.deadline_s == 1.0 and given.usd == pytest.approx(1.0 * t4 * 1.1)
    tokens = plan_hold(table, "replibatch/official-chat", {"prompt": "hi", "max_tokens": 100},
                       timeout=None, seen=None, budget_left=1.0)
    assert tokens.bounded and tokens.usd == pytest.approx(100 * 0.0000015 + 2 * 0.0000005)
    assert plan_hold(table, "acme/unknown", {}, timeout=None, seen=None, budget_left=1.0).usd is None


# -- identical jobs ------------------------------------------------------------------------------
def test_identical_keys_group_behind_their_first_row():
    groups = group_identical([0, 1, 2, 3, 4], ["a", "b", "a", None, "a"])
    assert groups.leaders == [0, 1, 3] and groups.followers == {0: [2, 4]} and groups.shared == 2
    row = shared_row({"output": "x", "cost_usd": 0.5, "cost_basis": "b"}, 0)
    assert row["cost_usd"] == 0.0 and "shared" in row["cost_basis"] and row["output"] == "x"
