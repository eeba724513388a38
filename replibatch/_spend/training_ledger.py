"""Trainings in the spend ledger: the entries of `replibatch._spend.ledger` with kind ``training``.

The same bookkeeping as predictions (`replibatch._spend.spendgate.SpendGate`), for one run of
``rb.train``: an entry is opened at the training's worst case before its create (a standing
budget may refuse it), bound to the training id once known, and finished with the actual cost.
A training re-attached from an earlier run's marker is finished without an entry; the ledger
keys entries by id, so a training is recorded once however many runs see it finish. Ledger
calls run in a worker thread (SQLite). Only the token's fingerprint is ever written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import anyio

from replibatch._spend.ledger import BudgetRefusal
from replibatch._spend.spendgate import SpendGate

__all__ = ["TrainingLedger"]

KIND = "training"


class TrainingLedger:
    """Ledger bookkeeping of one ``rb.train`` run, through the run's `SpendGate` (its ledger,
    token fingerprint and environment budgets). With no ledger every call does nothing."""

    def __init__(self, gate: SpendGate) -> None:
        self.gate = gate

    async def reserve(
        self, worst_usd: float | None, *, trainer: str, version: str
    ) -> str | BudgetRefusal | None:
        """Open an entry before the create: its id, the standing budget's refusal, or None
        without a ledger."""
        ledger = self.gate.ledger
        if ledger is None:
            return None
        entry = await anyio.to_thread.run_sync(
            lambda: ledger.reserve(
                worst_usd, kind=KIND, model=trainer, version=version, token=self.gate.token,
                budgets=self.gate.budgets,
            )
        )
        if isinstance(entry, str):
            self.gate.open_ids.add(entry)
        return entry

    async def attach(self, entry: str | None, training_id: str) -> None:
        """Bind the entry to the training its create made (or a reconcile adopted)."""
        ledger = self.gate.ledger
        if ledger is not None and entry is not None:
            await anyio.to_thread.run_sync(lambda: ledger.attach(entry, training_id))

    async def release(self, entry: str | None) -> None:
        """Drop the entry of a create that provably made nothing."""
        ledger = self.gate.ledger
        if ledger is None or entry is None:
            return
        try:
            await anyio.to_thread.run_sync(lambda: ledger.release(entry))
        finally:
            self.gate.open_ids.discard(entry)

    def leave_open(self, entry: str | None) -> None:
        """The entry stays counted at its worst case (the outcome is unknown)."""
        if entry is not None:
            self.gate.open_ids.discard(entry)

    async def finish(
        self, entry: str | None, record: Mapping[str, Any], row: Mapping[str, Any], *,
        trainer: str, version: str,
    ) -> None:
        """Close the training's entry with its final status, training time and cost."""
        ledger = self.gate.ledger
        cost = row.get("cost_usd")
        cost = float(cost) if isinstance(cost, (int, float)) and not math.isnan(cost) else None
        seconds = row.get("predict_s")
        seconds = float(seconds) if isinstance(seconds, (int, float)) else None
        try:
            if ledger is not None:
                await anyio.to_thread.run_sync(
                    lambda: ledger.finish(
                        str(record["id"]), status=str(row.get("status")), predict_s=seconds,
                        cost_usd=cost, cost_basis=row.get("cost_basis"), kind=KIND,
                        model=trainer, version=version, token=self.gate.token,
                    )
                )
        finally:
            if entry is not None:
                self.gate.open_ids.discard(entry)
