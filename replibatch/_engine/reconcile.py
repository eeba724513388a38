"""Finding the predictions that unanswered creates may have made: one sweep for all of them.

A create whose reply never arrived (connection lost after sending, a gateway 5xx, the run
interrupted while the create was held by ``Prefer: wait``) may or may not have made a
prediction. Re-sending it blind could pay twice, so the engine asks the account instead:
``GET /v1/predictions?created_after=...&created_before=...`` pages back, newest first, over the
window where the unanswered attempts' predictions can lie on the server's clock
(`replibatch._engine.server_clock`: learned from the answered creates, else a 30 s skew before
the earliest send), and every unanswered attempt is matched in that one sweep. Attempts that
fail close together wait `SETTLE_SECONDS` and share the sweep: with 5 % of creates failing at
100 creates/s, a sweep covers a few seconds of predictions for several failures at once.

Matching is by what was *sent*: the canonical input and the endpoint used (a version id, a
deployment, an official model). The reply's ``model`` string is never trusted for official
models: Replicate answers a create on ``/v1/models/meta/meta-llama-3-8b-instruct/predictions``
with ``"model": "replicate-internal/llama-3-8b-instruct-int8-triton"`` and a ``dp-...`` version
(recorded in ``shared/replicate-api/cassettes/test_predictions_create_by_model[True].yaml``).

Outcomes: `Outcome.record` is the adopted prediction; otherwise `Outcome.proven_absent` says the
sweep covered the whole window and found nothing (only then may the caller create again);
otherwise the outcome is still unknown (the sweep failed part-way) and the caller must not send.
Matching is pure (`match`); `Reconciler` adds the I/O and coalesces concurrent callers into one
sweep. Nothing here raises for the service's failures: they make the outcome unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import anyio

from replibatch._engine.pager import FetchPage, walk
from replibatch._engine.server_clock import CLOCK_SKEW, ServerClock
from replibatch._store.keys import canonical_json
from replibatch.errors import ReplicateAPIError

__all__ = ["CLOCK_SKEW", "Attempt", "Outcome", "Reconciler", "match", "parse_time"]

# An unknown outcome waits this long before its sweep: the server may still be committing the
# create, and attempts failing together (a dropped batch, 5 % of creates failing) share one
# sweep. Measured (bench/limits.py scenario 2): 0.5 s let ~3 failures share a sweep, 1 s ~6.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True, eq=False)
class Attempt:
    """One create that was sent and whose reply was not read.

    ``kind``/``ident`` name the endpoint used ("version" + version id, "deployment" + owner/name,
    "model" + owner/name of an official model); ``sent_at`` is our clock when it was sent.
    """

    kind: str
    ident: str
    input: dict
    sent_at: datetime
    _canonical: str = field(default="", repr=False, compare=False)

    @property
    def canonical_input(self) -> str:
        if not self._canonical:
            object.__setattr__(self, "_canonical", canonical_json(self.input))
        return self._canonical


@dataclass(frozen=True)
class Outcome:
    """What a sweep learned about one attempt (see the module docstring)."""

    record: dict | None = None
    proven_absent: bool = False
    reason: str = ""

    @property
    def unknown(self) -> bool:
        return self.record is None and not self.proven_absent


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime (Replicate writes ``...Z``), else None."""
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _endpoint_fits(record: dict, attempt: Attempt) -> bool:
    """Could `record` have been made by a create on `attempt`'s endpoint?"""
    deployment = record.get("deployment")
    if attempt.kind == "version":
        return record.get("version") == attempt.ident and not deployment
    if attempt.kind == "deployment":
        return deployment in (None, attempt.ident)
    # Official model: the reply's model/version name an internal model (see module docstring),
    # so only a record that demonstrably came from elsewhere is ruled out.
    return not deployment


def _could_be(record: dict, attempt: Attempt) -> bool:
    created = parse_time(record.get("created_at"))
    recent = created is None or created >= attempt.sent_at - CLOCK_SKEW
    return recent and _endpoint_fits(record, attempt)


def match(
    attempts: Iterable[Attempt], records: Iterable[dict], claimed: set[str]
) -> dict[Attempt, dict]:
    """Pair attempts with records: same canonical input, a fitting endpoint, created no earlier
    than the attempt's send time minus `CLOCK_SKEW`, not in `claimed`. Each record goes to one
    attempt at most; the ids given out are added to `claimed`. Exact ``model``/``version``
    agreement is preferred, so an official-model attempt takes a version-endpoint record only
    when nothing better fits."""
    by_input: dict[str, list[dict]] = {}
    for record in records:
        rid = record.get("id")
        sent = record.get("input")
        if not isinstance(rid, str) or rid in claimed or not isinstance(sent, dict):
            continue
        by_input.setdefault(canonical_json(sent), []).append(record)
    found: dict[Attempt, dict] = {}
    # Most specific endpoints first, so an official-model attempt cannot take a record that a
    # version attempt with the same input made.
    order = {"version": 0, "deployment": 1, "model": 2}
    for attempt in sorted(attempts, key=lambda a: order.get(a.kind, 3)):
        earliest = attempt.sent_at - CLOCK_SKEW
        best = None
        for record in by_input.get(attempt.canonical_input, ()):
            if record["id"] in claimed or not _endpoint_fits(record, attempt):
                continue
            created = parse_time(record.get("created_at"))
            if created is not None and created < earliest:
                continue
            exact = record.get("model") == attempt.ident or record.get("version") == attempt.ident
            if best is None or exact:
                best = record
                if exact:
                    break
        if best is not None:
            claimed.add(best["id"])
            found[attempt] = best
    return found


@dataclass
class _Waiter:
    attempt: Attempt
    outcome: Outcome | None = None


class Reconciler:
    """Coalesces reconcile requests of one run into sweeps of ``GET /v1/predictions``.

    `list_page(query)` fetches one page (`replibatch._engine.pager`; raising `ReplicateAPIError`
    when it cannot); `claimed` is the run's set of prediction ids already owned by a row;
    `clock` our wall clock (UTC), which stamps when an attempt was given up on.
    """

    def __init__(
        self,
        list_page: FetchPage,
        claimed: set[str],
        *,
        settle: float = SETTLE_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._list_page = list_page
        self._claimed = claimed
        self._settle = settle
        self._now = clock
        self.server_clock = ServerClock()
        """Bounds of the server's clock offset; the engine feeds it every answered create."""
        self._waiting: list[_Waiter] = []
        self._leading = False
        self._changed = anyio.Event()
        self.sweeps = 0  # how many sweeps ran (figures for tests and benchmarks)
        self.pages = 0

    def answered(self, sent: datetime, received: datetime, record: dict) -> None:
        """A create sent at `sent` was answered at `received` with `record`: narrows the
        windows of later sweeps (see `replibatch._engine.server_clock`)."""
        self.server_clock.observe(sent, received, parse_time(record.get("created_at")))

    async def find(self, attempt: Attempt) -> Outcome:
        """The outcome of one unanswered attempt, from the next sweep (which it may lead)."""
        waiter = _Waiter(attempt)
        self._waiting.append(waiter)
        while waiter.outcome is None:
            if self._leading:
                changed = self._changed
                await changed.wait()
                continue
            self._leading = True
            try:
                await anyio.sleep(self._settle)
                while self._waiting:
                    batch, self._waiting = self._waiting, []
                    try:
                        outcomes = await self.sweep([w.attempt for w in batch])
                    except BaseException:
                        self._waiting = [w for w in batch if w is not waiter] + self._waiting
                        raise
                    for w in batch:
                        w.outcome = outcomes[w.attempt]
            finally:
                if waiter.outcome is None:
                    self._waiting = [w for w in self._waiting if w is not waiter]
                self._leading = False
                self._changed.set()
                self._changed = anyio.Event()
        return waiter.outcome

    async def sweep(
        self, attempts: list[Attempt], list_page: FetchPage | None = None
    ) -> dict[Attempt, Outcome]:
        """One sweep for `attempts`, now: pages back over their window (see the module
        docstring) until past its start, or until every attempt is matched. `list_page`
        overrides the page reader (cleanup on interrupt reads unpaced). Never raises
        ReplicateAPIError: a failed page leaves the unmatched attempts unknown."""
        list_page = list_page or self._list_page
        self.sweeps += 1
        outcomes: dict[Attempt, Outcome] = {}
        if not attempts:
            return outcomes
        # Every attempt here was given up on by now: its prediction, if any, is older.
        window = self.server_clock.window(min(a.sent_at for a in attempts), self._now())
        start = window.start
        left = list(attempts)
        erased: list[dict] = []  # records in the window whose input Replicate already deleted

        def on_page(results: list[dict]) -> bool:
            nonlocal left
            self.pages += 1
            for attempt, record in match(left, results, self._claimed).items():
                outcomes[attempt] = Outcome(record=record)
            left = [a for a in left if a not in outcomes]
            erased.extend(r for r in results if r.get("data_removed") and not r.get("input"))
            oldest = min(
                (t for t in (parse_time(r.get("created_at")) for r in results) if t is not None),
                default=None,
            )
            # Past the window's start: a server that ignores the filter has nothing more for us.
            return bool(left) and not (oldest is not None and oldest < start)

        try:
            await walk(
                list_page, on_page, created_after=_iso(start),
                created_before=None if window.end is None else _iso(window.end),
            )
        except ReplicateAPIError as exc:
            reason = f"the account's predictions could not be listed ({exc})"
            for attempt in left:
                outcomes[attempt] = Outcome(reason=reason)
            return outcomes
        # The whole window was seen: the remaining attempts made no prediction, unless one of
        # them is a record whose input was deleted (an hour after it finished).
        for attempt in left:
            if any(_could_be(r, attempt) for r in erased):
                outcomes[attempt] = Outcome(
                    reason="a prediction in the window had its input deleted by "
                    "Replicate, so it cannot be told apart"
                )
            else:
                outcomes[attempt] = Outcome(proven_absent=True)
        return outcomes
