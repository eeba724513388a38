"""Spread one run's creates over several tokens and set aside those the service refuses.

A `TokenPool` holds one *lane* per token (`replibatch._engine.lanes.Lane`: the token's Edge, its
learned create limiter, its read pacing). It decides, for each create about to queue, which
token takes it: the active lane whose next free send slot comes soonest, judged from its
limiter's current rate and pause and the places already handed out on it but not sent yet
(ties go to the lane that sent fewest, then to the order given). It never sleeps and does no
I/O: the engine asks, waits, sends, and reports back (`taken`, `sent`, `set_aside`).

A token whose create is answered 401 (not accepted) or 402 (payment required) is set aside for
the rest of the run; such an answer created nothing, so the row asks the pool again and moves to
another token. Only refused creates move: a create whose outcome is unknown stays with its token
(its reconcile lists that token's account). `among` restricts a choice to the tokens a row's
pending marker names (a row may only be sent by a token whose account the next run will sweep).
When no lane is left, `stop_error` is what the run's remaining creates raise.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from replibatch._engine.tokens import TokenSpec
from replibatch._spend.spendgate import BILLING_URL, PaymentRequiredError
from replibatch.errors import AuthenticationError, ReplicateAPIError

__all__ = ["MARKER_TOKEN", "MARKER_TOKENS", "SetAside", "TokenPool"]

# Keys of a pending marker's ``meta`` (`replibatch._store.markers.PendingMarker`): the token that
# created the prediction, and, while its create is unanswered, every token it may be sent with.
MARKER_TOKEN = "token"
MARKER_TOKENS = "tokens"


class _Limiter(Protocol):
    @property
    def rate_per_minute(self) -> float: ...

    def pause_remaining(self) -> float: ...


class _Lane(Protocol):
    @property
    def spec(self) -> TokenSpec: ...

    @property
    def creates(self) -> _Limiter: ...


L = TypeVar("L", bound=_Lane)


@dataclass(frozen=True)
class SetAside:
    """Why a token was set aside: the HTTP status (401 or 402) and the service's detail."""

    spec: TokenSpec
    status: int
    detail: str

    def message(self) -> str:
        """One line for rows, warnings and the summary; names the token by profile and
        fingerprint, says why and what to do."""
        if self.status == 402:
            why = "Replicate answered 402 Payment Required (its account needs credit or billing)"
            todo = f"add credit or a payment method at {BILLING_URL}"
        else:
            why = f"Replicate answered {self.status} (the token was not accepted: revoked or mistyped)"
            todo = "check the token (or its profile's variable)"
        return f"{self.spec.label} set aside: {why}; {todo}, or leave it out of api_token"


class TokenPool(Generic[L]):
    """The lanes of a run (see the module docstring). Raises ValueError for no lanes."""

    def __init__(self, lanes: Sequence[L]) -> None:
        if not lanes:
            raise ValueError("a token pool needs at least one lane")
        self.lanes: list[L] = list(lanes)
        self._by_fp = {lane.spec.fingerprint: lane for lane in self.lanes}
        self._queued = dict.fromkeys(self._by_fp, 0)
        self.sent_by_token: dict[str, int] = dict.fromkeys(self._by_fp, 0)
        self.aside: dict[str, SetAside] = {}

    @property
    def fingerprints(self) -> list[str]:
        return list(self._by_fp)

    @property
    def several(self) -> bool:
        """True when the run was given more than one token."""
        return len(self.lanes) > 1

    def lane(self, fingerprint: str) -> L | None:
        """The lane of the token with `fingerprint`, or None when this run was not given it."""
        return self._by_fp.get(fingerprint)

    def is_active(self, lane: L) -> bool:
        return lane.spec.fingerprint not in self.aside

    def active(self, among: Collection[str] | None = None) -> list[L]:
        """Lanes not set aside (restricted to the fingerprints `among` when given), in order."""
        return [
            lane for lane in self.lanes
            if self.is_active(lane) and (among is None or lane.spec.fingerprint in among)
        ]

    def choose(self, among: Collection[str] | None = None) -> L | None:
        """The active lane (within `among`) whose next send slot comes soonest; None when every
        candidate was set aside."""
        candidates = self.active(among)
        if not candidates:
            return None
        order = {id(lane): i for i, lane in enumerate(self.lanes)}

        def soonest(lane: L) -> tuple[float, int, int]:
            per_second = max(lane.creates.rate_per_minute, 1e-9) / 60.0
            fp = lane.spec.fingerprint
            due = lane.creates.pause_remaining() + (self._queued[fp] + 1) / per_second
            return (due, self.sent_by_token[fp], order[id(lane)])

        return min(candidates, key=soonest)

    def taken(self, lane: L) -> None:
        """A create took a place in `lane`'s queue (until `sent` or `given_back`)."""
        self._queued[lane.spec.fingerprint] += 1

    def given_back(self, lane: L) -> None:
        """A place taken in `lane`'s queue was left without sending (the lane was set aside, the
        run stopped)."""
        fp = lane.spec.fingerprint
        self._queued[fp] = max(0, self._queued[fp] - 1)

    def sent(self, lane: L) -> None:
        """The create holding a place in `lane`'s queue was sent."""
        self.given_back(lane)
        self.sent_by_token[lane.spec.fingerprint] += 1

    def set_aside(self, lane: L, exc: ReplicateAPIError) -> SetAside | None:
        """Set `lane` aside after its create was refused with 401 or 402 (`exc`). Returns the
        record when this call set it aside, None when it already was (the first reason stays)."""
        fp = lane.spec.fingerprint
        if fp in self.aside:
            return None
        record = SetAside(lane.spec, exc.status or 0, exc.detail or str(exc))
        self.aside[fp] = record
        return record

    def marker_meta(self, among: Collection[str] | None = None) -> dict[str, list[str]]:
        """What a marker written before a create records: every token the create may still be
        sent with (the active lanes, within `among`). A row only ever moves to one of them, so
        a later run that sweeps each of their accounts finds whatever the create made."""
        return {MARKER_TOKENS: [lane.spec.fingerprint for lane in self.active(among)]}

    def marker_lanes(self, meta: Mapping[str, Any]) -> list[L] | str:
        """The lanes that may read a pending marker's prediction: the creating token's lane;
        for a create that was unanswered, the lane of every token it may have been sent with.
        A string says why the row cannot be re-attached this run (a token it needs was not
        given); markers from before several tokens name none: a run of one token reads them
        with it, as it always did."""
        creator = meta.get(MARKER_TOKEN)
        if isinstance(creator, str):
            names = [creator]
        elif isinstance(meta.get(MARKER_TOKENS), list) and meta[MARKER_TOKENS]:
            names = [fp for fp in meta[MARKER_TOKENS] if isinstance(fp, str)]
        elif not self.several:
            return [self.lanes[0]]
        else:
            return (
                "its prediction was started by an earlier run that did not record its token; "
                "re-run this row with that one token alone"
            )
        missing = [fp for fp in names if fp not in self._by_fp]
        if missing:
            return (
                f"its prediction was started with token {', '.join(missing)}, which this run was "
                "not given: re-run with that token in api_token to re-attach (nothing was sent)"
            )
        return [self._by_fp[fp] for fp in names]

    def summary(self, spent_by_token: Mapping[str, float]) -> dict[str, dict[str, Any]]:
        """Per token fingerprint, for the run summary: its profile, the creates it sent, what
        its predictions cost and, if it was set aside, why."""
        out: dict[str, dict[str, Any]] = {}
        for lane in self.lanes:
            fp = lane.spec.fingerprint
            aside = self.aside.get(fp)
            out[fp] = {
                "profile": lane.spec.profile,
                "creates": self.sent_by_token[fp],
                "spent_usd": float(spent_by_token.get(fp, 0.0)),
                "set_aside": aside.message() if aside is not None else None,
            }
        return out

    def stop_error(self, among: Collection[str] | None = None) -> ReplicateAPIError:
        """What a create raises when no lane (within `among`) is left: PaymentRequiredError
        when any of them was refused for payment, else AuthenticationError; the message names
        every token and why it was set aside."""
        fps = self.fingerprints if among is None else [fp for fp in self.fingerprints if fp in among]
        records = [self.aside[fp] for fp in fps if fp in self.aside]
        missing = [fp for fp in fps if fp not in self.aside]
        text = "every token was set aside: " + "; ".join(r.message() for r in records)
        if missing:  # only for `among` naming tokens this run lacks (the caller checks first)
            text += f"; not given this run: {', '.join(missing)}"
        if any(r.status == 402 for r in records):
            return PaymentRequiredError(text, status=402)
        return AuthenticationError(text, status=401)
