"""Learn the state of many predictions in flight with few read requests.

One `Poller` per run. Rows waiting on a prediction register it (`Poller.wait`); one background
task (`Poller.run`) decides when each is worth a look and how to look:

- With several predictions due, one sweep of ``GET /v1/predictions`` (newest first, 100 full
  prediction objects a page, per the OpenAPI description of that endpoint) with
  ``created_after`` / ``created_before`` bounding the due predictions' ``created_at`` reads
  them all in about ``ceil(n / 100)`` requests; every watched prediction a page shows is
  updated, due or not.
  Those a sweep did not show (another process's predictions filling the pages, a listing
  lagging behind) are read with one ``GET /v1/predictions/{id}`` each.
- With only a few due, one GET each is cheaper than a page.

When to look: at intervals of a tenth of its age (0.5 s to 5 s) while few are watched; with
many, a quarter of its age (to 15 s), and a due look may wait a little (5 % of the age, at most
2 s) for a page's worth to fall due. Once predictions of the same model have finished in this
run, the others are not looked at before the shortest duration seen (``completed_at -
created_at``, server clock): 1,000 predictions of 90 s cost a few sweeps, not one request each
every few seconds.

Every request goes through the caller's read function, which paces reads under the account's
read limit (3,000/min, shared with everything else) and retries transient failures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio

from replibatch._http.edge import ApiReply, Edge
from replibatch.errors import ReplicateAPIError

__all__ = ["TERMINAL", "Poller"]

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
_MIN_INTERVAL = 0.5
_FEW = 10  # watching at most this many: look often (a GET each is cheap)
_FEW_FRACTION, _FEW_CAP = 0.1, 5.0  # ... at a tenth of the age, at least every 5 s
_MANY_FRACTION, _MANY_CAP = 0.25, 15.0  # many: a quarter of the age until durations are known
_PAGE = 100  # predictions per list page (Replicate's page size)
_LATENESS_FRACTION, _MAX_LATENESS = 0.05, 2.0  # how long a due look may wait for a fuller page
_COALESCE = 0.25  # what falls due this soon joins a look already being made
_GET_AT_MOST = 3  # due predictions read one GET each rather than by a sweep
_MAX_PAGES = 50  # one sweep never reads more than this many pages
_DURATIONS_KEPT = 64
_MARGIN = timedelta(milliseconds=1)  # created_after is strict in some servers, "at or after" in the spec

Read = Callable[[Callable[[], Awaitable[ApiReply]]], Awaitable[ApiReply]]


def parse_time(text: Any) -> datetime | None:
    """A Replicate timestamp (ISO 8601, ``Z`` or offset) as an aware datetime, else None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class _Watch:
    record: dict
    created: datetime | None
    sent: float  # our monotonic clock when the create was sent
    model: str
    due: float
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None

    @property
    def id(self) -> str:
        return self.record["id"]


@dataclass
class PollStats:
    """What polling cost: requests of each kind and predictions updated by them."""

    sweeps: int = 0
    pages: int = 0
    gets: int = 0
    updates: int = 0


class Poller:
    """Watches predictions in flight until they finish; see the module docstring.

    `read` runs one request under the read limiter (and its retries). `clock` is monotonic.
    """

    def __init__(self, edge: Edge, read: Read, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._edge = edge
        self._read = read
        self._clock = clock
        self._watches: dict[str, _Watch] = {}
        self._durations: dict[str, list[float]] = {}
        self._wake = anyio.Event()
        self._closing = False
        self.stats = PollStats()

    # -- for rows ---------------------------------------------------------------------------

    async def wait(self, record: dict, *, sent: float, deadline: float | None = None) -> dict:
        """Wait until the prediction is terminal and return its latest record; at `deadline`
        (monotonic) return it as last seen, unfinished.

        Raises the ReplicateAPIError that kept the poller from reading it (after the read
        function's retries), so the caller can keep its marker.
        """
        if record.get("status") in TERMINAL:
            return record
        watch = self._watches.get(record["id"])
        if watch is None:
            now = self._clock()
            watch = _Watch(record, parse_time(record.get("created_at")), sent,
                           _model_key(record), now + _MIN_INTERVAL)
            self._schedule(watch, now)
            self._watches[watch.id] = watch
            self._poke()
        try:
            if deadline is None:
                await watch.done.wait()
            else:
                with anyio.move_on_after(max(0.0, deadline - self._clock())):
                    await watch.done.wait()
        finally:
            self._watches.pop(watch.id, None)
        if watch.error is not None:
            raise watch.error
        return watch.record

    # -- the background task ----------------------------------------------------------------

    def close(self) -> None:
        """Let `run` return once nothing is watched any more."""
        self._closing = True
        self._poke()

    async def run(self) -> None:
        """Look at due predictions until `close` and nothing left to watch."""
        while True:
            if not self._watches:
                if self._closing:
                    return
                await self._sleep(None)
                continue
            now = self._clock()
            look_at = self._next_look()
            if look_at > now:
                await self._sleep(look_at - now)
                continue
            due = [w for w in self._watches.values() if w.due <= now + _COALESCE]
            try:
                if len(due) <= _GET_AT_MOST:
                    await self._get_each(due)
                else:
                    await self._sweep(due)
            except ReplicateAPIError as exc:
                self._fail(due, exc)

    def _fail(self, watches: list[_Watch], exc: ReplicateAPIError) -> None:
        """Reads kept failing (after the read function's retries): the waiters get the error."""
        for watch in watches:
            if watch.id in self._watches and not watch.done.is_set():
                watch.error = exc
                watch.done.set()

    def _next_look(self) -> float:
        """When to look next: when a page's worth is due, or when the soonest due one has
        waited its allowed lateness, whichever comes first. With few predictions watched a GET
        each is cheap, so nothing waits."""
        watches = sorted(self._watches.values(), key=lambda w: w.due)
        first = watches[0]
        if len(watches) <= _FEW:
            return first.due
        lateness = min(_MAX_LATENESS, _LATENESS_FRACTION * max(0.0, first.due - first.sent))
        full_page = watches[min(len(watches), _PAGE) - 1].due
        return min(first.due + lateness, full_page)

    async def _sleep(self, seconds: float | None) -> None:
        if seconds is None:
            await self._wake.wait()
        else:
            with anyio.move_on_after(seconds):
                await self._wake.wait()
        self._wake = anyio.Event()

    def _poke(self) -> None:
        self._wake.set()

    # -- looking ----------------------------------------------------------------------------

    async def _get_each(self, due: list[_Watch]) -> None:
        async def one(watch: _Watch) -> None:
            try:
                reply = await self._read(lambda: self._edge.get_prediction(watch.id))
            except ReplicateAPIError as exc:
                self._fail([watch], exc)  # raised here, it would reach run() in a group
                return
            self.stats.gets += 1
            if isinstance(reply.body, dict):
                self._update(reply.body)

        async with anyio.create_task_group() as tg:
            for watch in due:
                tg.start_soon(one, watch)

    async def _sweep(self, due: list[_Watch]) -> None:
        known = [w.created for w in due if w.created is not None]
        if len(known) < len(due):
            await self._get_each([w for w in due if w.created is None])
            due = [w for w in due if w.created is not None]
            if not due:
                return
        oldest, newest = min(known), max(known)
        self.stats.sweeps += 1
        wanted = {w.id for w in due}
        # The window of the due ones only: newer predictions (not due) do not fill the pages.
        after, before = _iso(oldest - _MARGIN), _iso(newest + _MARGIN)
        reply = await self._read(
            lambda: self._edge.list_predictions(created_after=after, created_before=before)
        )
        pages = 1
        while True:
            body = reply.body if isinstance(reply.body, dict) else {}
            for record in body.get("results") or []:
                if isinstance(record, dict) and record.get("id") in self._watches:
                    wanted.discard(record["id"])
                    self._update(record)
            nxt = body.get("next")
            if not wanted or not nxt or pages >= _MAX_PAGES:
                break
            url: str = nxt

            async def following(url: str = url) -> ApiReply:
                return await self._edge.list_predictions(cursor_url=url)

            reply = await self._read(following)
            pages += 1
        self.stats.pages += pages
        missing = [self._watches[i] for i in wanted if i in self._watches]
        if missing:
            await self._get_each(missing)

    def _update(self, record: dict) -> None:
        watch = self._watches.get(record.get("id", ""))
        if watch is None:
            return
        self.stats.updates += 1
        watch.record = record
        if record.get("status") in TERMINAL:
            self._learn(record)
            watch.done.set()
            return
        self._schedule(watch, self._clock())

    # -- when to look -----------------------------------------------------------------------

    def _schedule(self, watch: _Watch, now: float) -> None:
        age = max(0.0, now - watch.sent)
        few = len(self._watches) <= _FEW
        fraction, cap = (_FEW_FRACTION, _FEW_CAP) if few else (_MANY_FRACTION, _MANY_CAP)
        due = now + min(cap, max(_MIN_INTERVAL, age * fraction))
        expected = self._expected(watch.model)
        if expected is not None and watch.sent + expected > due:
            due = watch.sent + expected  # predictions like this one take at least that long
        watch.due = due

    def _learn(self, record: dict) -> None:
        if record.get("status") != "succeeded":
            return
        created, completed = parse_time(record.get("created_at")), parse_time(record.get("completed_at"))
        if created is None or completed is None:
            return
        seconds = (completed - created).total_seconds()
        if not math.isfinite(seconds) or seconds < 0:
            return
        seen = self._durations.setdefault(_model_key(record), [])
        seen.append(seconds)
        del seen[:-_DURATIONS_KEPT]

    def _expected(self, model: str) -> float | None:
        seen = self._durations.get(model)
        return min(seen) if seen else None


def _model_key(record: dict) -> str:
    return str(record.get("version") or record.get("model") or "")
