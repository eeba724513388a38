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

When to look is `replibatch._engine.pollplan`'s policy: often while few are watched; with many
and none of their model finished, one probe page of the oldest due ones each time the age has
doubled (the rest follow the probe); once some finished, at the shortest duration seen
(``completed_at - created_at``, server clock). A due look may wait a little (5 % of the age, at
most 2 s) for a page's worth to fall due. 1,000 predictions of 65 s cost ~10 probe pages and
~10 pages of sweeps as they finish, not one request each every few seconds.

Every request goes through the caller's read function, which paces reads under the account's
read limit (3,000/min, shared with everything else) and retries transient failures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio

from replibatch._engine.pager import FetchPage, Read, walk
from replibatch._engine.pollplan import FEW, PAGE, look_time, next_look, probe
from replibatch._http.edge import Edge
from replibatch.errors import ReplicateAPIError

__all__ = ["TERMINAL", "Poller"]

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
_MIN_INTERVAL = 0.5
_COALESCE = 0.25  # what falls due this soon joins a look already being made
_GET_AT_MOST = 3  # due predictions read one GET each rather than by a sweep
_MAX_PAGES = 50  # one sweep never reads more than this many pages
_DURATIONS_KEPT = 64
_MARGIN = timedelta(milliseconds=1)  # created_after is strict in some servers, "at or after" in the spec

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

    `fetch` reads one list page (`replibatch._engine.pager`, paced); `read` runs one request
    under the read limiter (and its retries). `clock` is monotonic.
    """

    def __init__(
        self, fetch: FetchPage, edge: Edge, read: Read, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
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
            deferred: list[_Watch] = []
            if len(self._watches) > FEW:
                # Many in flight: of a model with no duration known, only a probe page is read.
                keep, later = probe(
                    [(w.id, w.model, _stamp(w), self._expected(w.model) is not None) for w in due],
                    [(w.id, w.model, _stamp(w)) for w in self._watches.values()],
                )
                due = [self._watches[i] for i in keep]
                deferred = [self._watches[i] for i in later]
            try:
                if len(due) <= _GET_AT_MOST:
                    await self._get_each(due)
                else:
                    await self._sweep(due)
            except ReplicateAPIError as exc:
                self._fail(due, exc)
            self._follow(due, deferred)

    def _follow(self, probed: list[_Watch], deferred: list[_Watch]) -> None:
        """Deferred predictions are looked at with the probe page's next look (or on their own
        schedule once a duration of their model is known)."""
        if not deferred:
            return
        now = self._clock()
        still = [w.due for w in probed if w.id in self._watches and not w.done.is_set()]
        for watch in deferred:
            if self._expected(watch.model) is not None or not still:
                self._schedule(watch, now)
            else:
                watch.due = max(min(still), now + _MIN_INTERVAL)

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
        return look_time([w.due for w in watches[:PAGE]], watches[0].sent, len(watches))

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

        def on_page(results: list[dict]) -> bool:
            for record in results:
                if record.get("id") in self._watches:
                    wanted.discard(record["id"])
                    self._update(record)
            return bool(wanted)

        # The window of the due ones only: newer predictions (not due) do not fill the pages.
        walked = await walk(
            self._fetch, on_page, created_after=_iso(oldest - _MARGIN),
            created_before=_iso(newest + _MARGIN), max_pages=_MAX_PAGES,
        )
        self.stats.pages += walked.pages
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
        watch.due = next_look(now, watch.sent, len(self._watches), self._expected(watch.model))

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


def _stamp(watch: _Watch) -> float | None:
    return None if watch.created is None else watch.created.timestamp()


def _model_key(record: dict) -> str:
    return str(record.get("version") or record.get("model") or "")
