"""The engine's side of the spend ledger: one `SpendGate` per run.

Every prediction a run creates goes into the ledger (`replibatch._spend.ledger`) once: an entry is
reserved before the create is sent (at the row's worst case, so the standing budgets stored in
the ledger and read from the environment hold across processes), attached to the prediction
once its id is known, released when provably nothing was created, and finished with the actual
cost when the row ends. Rows served from the cache never get here.

The ledger is blocking SQLite: every call runs in a worker thread (``anyio.to_thread``), never
on the event loop. Only the token's fingerprint is written, never the token.

`BillingStop` is the run's memory of a 402 ("Billing required"): after the first one no create
is sent any more, and each row not created yet ends ``error`` with one line saying what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import anyio

from replibatch._spend.ledger import BudgetRefusal, SpendLedger, token_fingerprint
from replibatch.errors import ReplicateAPIError

__all__ = ["BILLING_URL", "BillingStop", "PaymentRequiredError", "SpendGate", "is_payment_required"]

# Where Replicate's own 402 body sends the user (replicate/replicate-javascript#342, reproduced
# by the simulator's `replibatch.sim.credit`).
BILLING_URL = "https://replicate.com/account/billing#billing"


class PaymentRequiredError(ReplicateAPIError):
    """A create not sent because the account answered 402 (payment required) earlier in the run."""


def is_payment_required(exc: BaseException) -> bool:
    """True for the service's 402 answer (the account needs billing or credit)."""
    return isinstance(exc, ReplicateAPIError) and exc.status == 402


@dataclass
class BillingStop:
    """Set by the first 402 of a run; then every create not yet sent is refused (no retry
    storm: a 402 answers every create the same until the user acts)."""

    token: str | None = None  # fingerprint of the token that was refused
    detail: str | None = None
    text: str | None = None  # the whole line, when the caller words it (several tokens)

    @property
    def stopped(self) -> bool:
        return self.detail is not None

    def trip(self, token: str | None, exc: ReplicateAPIError, *, text: str | None = None) -> None:
        if self.detail is None:
            self.token, self.detail, self.text = token, exc.detail, text

    def message(self) -> str:
        """The one line rows and the summary carry."""
        if self.text is not None:
            return self.text
        who = f"the account of token {self.token}" if self.token else "the account"
        return (
            f"{who} needs credit or billing: Replicate answered 402 Payment Required; add a payment "
            f"method or credit at {BILLING_URL}, then re-run (rows not created were not sent)"
        )

    def error(self) -> PaymentRequiredError:
        return PaymentRequiredError(self.message(), status=402)


@dataclass
class SpendGate:
    """Ledger bookkeeping for one run. `ledger` None: no ledger (nothing recorded, no standing
    budget). `budgets` are the environment's caps, checked with the stored ones by every
    `reserve`. `token` is the fingerprint of the run's token."""

    ledger: SpendLedger | None
    token: str | None
    budgets: dict[str, float] = field(default_factory=dict)
    open_ids: set[str] = field(default_factory=set)  # entries this run reserved, not closed
    spent_by_token: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_token(
        cls, ledger: SpendLedger | None, api_token: str | None, budgets: dict[str, float]
    ) -> SpendGate:
        """A gate that writes only `api_token`'s fingerprint (the token itself is dropped here)."""
        return cls(ledger, token_fingerprint(api_token), dict(budgets))

    async def standing(self) -> bool:
        """True when a standing cap applies (the environment's or one stored in the ledger); read
        off the event loop, as the stored caps are in SQLite."""
        if self.budgets:
            return True
        if self.ledger is None:
            return False
        return bool(await anyio.to_thread.run_sync(self.ledger.budgets))

    async def left(self) -> float | None:
        """USD left under the tightest standing cap (None: no cap)."""
        if self.ledger is None:
            return None
        ledger = self.ledger

        def compute() -> float | None:
            caps = dict(ledger.budgets())
            for period, usd in self.budgets.items():
                caps[period] = min(usd, caps.get(period, math.inf))
            if not caps:
                return None
            return min(max(0.0, cap - ledger.committed(period)) for period, cap in caps.items())

        return await anyio.to_thread.run_sync(compute)

    async def reserve(
        self, worst_case_usd: float | None, *, model: str | None, version: str | None
    ) -> str | BudgetRefusal | None:
        """Open an entry before a create; its id, a `BudgetRefusal`, or None without a ledger."""
        if self.ledger is None:
            return None
        ledger = self.ledger
        entry = await anyio.to_thread.run_sync(
            lambda: ledger.reserve(
                worst_case_usd, model=model, version=version, token=self.token,
                budgets=self.budgets,
            )
        )
        if isinstance(entry, str):
            self.open_ids.add(entry)
        return entry

    @property
    def open_entries(self) -> int:
        return len(self.open_ids)

    async def attach(
        self, entry: str | None, prediction_id: str, *, token: str | None = None
    ) -> None:
        """Bind the entry to the prediction its create made (or a reconcile adopted). `token`:
        the fingerprint of the token that made it, when the run has several (else the gate's)."""
        if self.ledger is None or entry is None:
            return
        ledger = self.ledger
        fingerprint = token or self.token
        await anyio.to_thread.run_sync(
            lambda: ledger.attach(entry, prediction_id, token=fingerprint)
        )

    async def release(self, entry: str | None) -> None:
        """Drop the entry of a create that provably made nothing."""
        if self.ledger is None or entry is None:
            return
        ledger = self.ledger
        try:
            await anyio.to_thread.run_sync(lambda: ledger.release(entry))
        finally:
            self.open_ids.discard(entry)  # after the ledger dropped it (see `finish`)

    def leave_open(self, entry: str | None) -> None:
        """The entry stays in the ledger counted at its worst case (the outcome is unknown, or
        the prediction was lost track of): it no longer belongs to this run's open ones."""
        if entry is not None:
            self.open_ids.discard(entry)

    async def finish(
        self,
        entry: str | None,
        record: dict,
        row: dict,
        *,
        model: str | None,
        version: str | None,
        token: str | None = None,
    ) -> None:
        """Close the prediction's entry with its final status, predict time and cost. A
        prediction re-attached from an earlier run's marker (no `entry`) is finished too.
        `token`: the fingerprint of the token that created it (default: the gate's)."""
        cost = row.get("cost_usd")
        fingerprint = token or self.token
        if fingerprint is not None and isinstance(cost, (int, float)) and not math.isnan(cost):
            self.spent_by_token[fingerprint] = self.spent_by_token.get(fingerprint, 0.0) + cost
        try:
            if self.ledger is not None:
                ledger = self.ledger
                predict_s = _predict_s(record)
                await anyio.to_thread.run_sync(
                    lambda: ledger.finish(
                        record["id"], status=str(record.get("status") or row.get("status")),
                        predict_s=predict_s, cost_usd=_float(cost),
                        cost_basis=row.get("cost_basis"), model=model, version=version,
                        token=fingerprint,
                    )
                )
        finally:
            # Only once the ledger holds the actual cost: while its worst case is still reserved
            # there, a row refused by a standing budget must see this entry open and wait.
            if entry is not None:
                self.open_ids.discard(entry)


def _predict_s(record: dict) -> float | None:
    metrics = record.get("metrics")
    value = metrics.get("predict_time") if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
