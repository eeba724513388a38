"""Admitting a row: room under ``max_cost`` (`Budget`) and the standing budgets (`SpendGate`).

A row is reserved at its worst case (`replibatch._engine.reserve`) under ``max_cost`` or a
standing budget, else at its expected cost; a row that does not fit waits while this run's rows
in flight may free room (each finished row also shortens the worst case of the next), and is
skipped with a reason once waiting cannot help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio

from replibatch._engine.reserve import Hold, Seen, last_chance_hold, plan_hold, work_size
from replibatch._engine.target import Target
from replibatch._spend.budget import Budget, Reservation
from replibatch._spend.cost import PriceTable, expected_cost
from replibatch._spend.ledger import BudgetRefusal
from replibatch._spend.spendgate import SpendGate
from replibatch._table.frame import Job

__all__ = ["Admission", "Admitted"]


@dataclass
class Admitted:
    """The outcome of admitting a row: its run reservation (None without ``max_cost``), its
    spend-ledger entry (None without a ledger), its hold, and a skip reason (None: admitted)."""

    reservation: Reservation | None
    entry: str | None
    hold: Hold
    reason: str | None = None


class Admission:
    """The budget side of one run: reservations, ledger entries, and what finished rows taught."""

    def __init__(
        self,
        *,
        budget: Budget,
        prices: PriceTable,
        gate: SpendGate,
        timeout: float | None,
        standing: bool,
    ) -> None:
        self.budget = budget
        self.prices = prices
        self.gate = gate
        self.timeout = timeout
        # A standing cap applies: rows are reserved at their worst case as under max_cost.
        self.standing = standing
        self.seen: dict[str, Seen] = {}  # model -> predict times of its finished rows
        # Model -> ledger entry of its probe row (no predict time known yet, standing budget).
        self.probes: dict[str, str] = {}
        self._changed = anyio.Event()

    @property
    def reserves(self) -> bool:
        """True when rows are reserved at their worst case (``max_cost`` or a standing budget)."""
        return self.budget.max_cost is not None or self.standing

    def unreserved(self) -> Hold:
        """The hold of a row not (yet) reserved: the run's timeout, no worst case."""
        return Hold(None, self.timeout, False)

    def _prior(self, job: Job) -> float | None:
        if self.budget.max_cost is None:
            return None
        return expected_cost(self.prices, job.model, job.input)

    def _hold(self, job: Job, standing_left: float | None = None) -> Hold:
        """The row's worst-case reservation and server-side deadline: under ``max_cost`` or a
        standing budget (`standing_left`: what the tightest one has left), else none."""
        if not self.reserves:
            return self.unreserved()
        lefts = [v for v in (self.budget.left, standing_left) if v is not None]
        return plan_hold(
            self.prices,
            job.model,
            job.input,
            timeout=self.timeout,
            seen=self.seen.get(job.model),
            budget_left=min(lefts) if lefts else None,
        )

    async def open_entry(self, job: Job, target: Target, hold: Hold) -> str | BudgetRefusal | None:
        """Reserve the row's spend-ledger entry at its worst case (else its expected cost):
        its id, the standing budget's refusal, or None without a ledger."""
        worst = hold.usd
        if worst is None:
            worst = expected_cost(self.prices, job.model, job.input)
        return await self.gate.reserve(
            worst, model=target.model_name or job.model, version=target.identity
        )

    async def admit(self, job: Job, target: Target) -> Admitted:
        """Room for the row under ``max_cost`` and the standing budgets, or a skip reason. A
        standing budget's refusal waits while this run's own rows in flight may free room,
        re-planning the hold each time; then the refusal's text is the reason."""
        while True:
            reservation, hold = await self._reserve(job)
            if reservation is None:
                reason = self.budget.skip_reason(job.model, self._prior(job), worst=hold.usd)
                return Admitted(None, None, hold, reason)
            probe = self._is_probe(job, hold)
            if probe and self.probes.get(job.model) in self.gate.open_ids:
                # Under a standing budget a probe is reserved at nearly all that is left, so a
                # second one would get a deadline too short to finish: wait for its figure.
                self.budget.release(reservation)
                await self._changed.wait()
                continue
            opened = await self.open_entry(job, target, hold)
            if not isinstance(opened, BudgetRefusal):
                if probe and opened is not None:
                    self.probes[job.model] = opened
                return Admitted(reservation, opened, hold)
            # Handed back without waking others: a refused row waking refused rows would spin.
            self.budget.release(reservation)
            if self.gate.open_entries <= 0:
                return Admitted(None, None, hold, str(opened))
            await self._changed.wait()

    def _is_probe(self, job: Job, hold: Hold) -> bool:
        """True for a row whose worst case exists only because a standing budget sized its
        deadline (per-second model, no timeout, no predict time seen or typical)."""
        if not self.standing or self.budget.max_cost is not None or hold.usd is None:
            return False
        unsized = plan_hold(
            self.prices, job.model, job.input, timeout=self.timeout,
            seen=self.seen.get(job.model), budget_left=None,
        )
        return unsized.usd is None

    async def _reserve(self, job: Job) -> tuple[Reservation | None, Hold]:
        """A budget reservation for this row, waiting while rows in flight may free room."""
        prior = self._prior(job)
        while True:
            standing_left = await self.gate.left() if self.standing else None
            hold = self._hold(job, standing_left)  # re-planned: finished rows teach the deadline
            reservation = self.budget.try_start(job.model, prior, worst=hold.usd)
            if reservation is not None:
                return reservation, hold
            if not self.budget.worth_waiting(job.model, prior, worst=hold.usd):
                last = None
                if self.timeout is None:
                    last = last_chance_hold(
                        self.prices, job.model, job.input, seen=self.seen.get(job.model),
                        budget_left=self.budget.left,
                    )
                if last is not None:
                    reservation = self.budget.try_start(job.model, prior, worst=last.usd)
                    if reservation is not None:
                        return reservation, last
                return None, hold
            await self._changed.wait()

    def learn_predict_time(self, job: Job, record: dict[str, Any]) -> None:
        """Remember the row's ``predict_time``: it bounds the worst case of later rows."""
        metrics = record.get("metrics") or {}
        seconds = metrics.get("predict_time") if isinstance(metrics, dict) else None
        if isinstance(seconds, (int, float)) and seconds >= 0:
            self.seen.setdefault(job.model, Seen()).add(float(seconds), work_size(job.input))

    def settle(self, reservation: Reservation | None, cost: float | None) -> None:
        """Close a reservation (None cost: nothing was created) and wake rows waiting on budget."""
        if reservation is None:
            return
        if cost is None:
            self.budget.release(reservation)
        else:
            self.budget.finish(reservation, cost)
        self._changed.set()
        self._changed = anyio.Event()
