"""A spending cap for one run: which predictions may start so that spending stays under it.

The contract: no new prediction is started once ``spent + in-flight reservations + this one's
reservation`` would pass ``max_cost``; rows never started get ``skipped_budget``. When the
caller knows a prediction's worst case (``worst=``: a server-side deadline × price per second,
unit prices × input bounds; see `replibatch._engine.reserve`) that is what is reserved, and the cap
holds outright. Otherwise the expected cost is reserved, and the cap can be passed only by what
the predictions in flight cost beyond their estimates. Each finish swaps the reservation for
the actual cost.

Expected cost of a row of a model, in order: the mean actual cost of that model's finished rows
in this run; else the row's prior (`replibatch._spend.cost.expected_cost`); else unknown. A model whose
cost is unknown runs one probe row at a time (counted as 0 in flight) while budget remains,
until one finishes and gives a figure. A model whose probe finishes with an unknown (NaN) cost
cannot be kept under a cap, so its further rows are refused.

Cached rows never reach the budget: they cost nothing in this run. Nothing here awaits or
sleeps; the methods are synchronous and lock-protected, so they are atomic for the tasks of one
event loop and safe from threads.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from decimal import Decimal

from replibatch._table.summary import format_usd
from replibatch.errors import ConfigurationError

__all__ = ["Budget", "Reservation"]


@dataclass(frozen=True, eq=False)
class Reservation:
    """One started prediction's hold on the budget; hand it back to `finish` or `release`.

    ``expected_cost`` is None for a probe of a model whose cost is not known yet.
    """

    model_key: str
    expected_cost: float | None
    _id: object = field(default_factory=object, repr=False)


class Budget:
    """Tracks spending against `max_cost` (USD; None: no cap, spending is still tracked).

    Raises ConfigurationError when `max_cost` is negative, NaN or not a number.
    """

    def __init__(self, max_cost: float | None) -> None:
        if max_cost is not None:
            if isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)):
                raise ConfigurationError(f"max_cost must be a number of USD or None, got {max_cost!r}")
            if math.isnan(max_cost) or max_cost < 0:
                raise ConfigurationError(f"max_cost must be >= 0, got {max_cost!r}")
        self._cap = None if max_cost is None or math.isinf(max_cost) else _dec(max_cost)
        self._max_cost = max_cost
        self._lock = threading.Lock()
        self._spent = Decimal(0)
        self._in_flight: dict[Reservation, Decimal] = {}
        self._finished: dict[str, tuple[Decimal, int]] = {}
        self._probing: set[str] = set()
        self._unpriceable: set[str] = set()
        self._unknown_cost_rows = 0

    # -- state --------------------------------------------------------------------------------

    @property
    def max_cost(self) -> float | None:
        return self._max_cost

    @property
    def spent(self) -> float:
        """USD of finished predictions (a NaN actual counts its reservation's estimate)."""
        return float(self._spent)

    @property
    def in_flight_expected(self) -> float:
        """USD expected for the predictions in flight (probes of unknown cost count 0)."""
        return float(sum(self._in_flight.values(), Decimal(0)))

    @property
    def left(self) -> float | None:
        """USD under the cap not spent or reserved (None: no cap)."""
        with self._lock:
            return None if self._cap is None else float(self._cap - self._committed())

    @property
    def in_flight(self) -> int:
        """How many predictions are in flight."""
        return len(self._in_flight)

    @property
    def unknown_cost_rows(self) -> int:
        """Finished rows whose cost was NaN and that had no estimate: spent leaves them out."""
        return self._unknown_cost_rows

    def expected_cost(self, model_key: str, prior: float | None = None) -> float | None:
        """The estimate a new row of `model_key` would reserve, or None when unknown."""
        with self._lock:
            expected = self._expected(model_key, prior)
        return None if expected is None else float(expected)

    # -- decisions ----------------------------------------------------------------------------

    def try_start(
        self, model_key: str, prior: float | None = None, *, worst: float | None = None
    ) -> Reservation | None:
        """Reserve budget for one prediction of `model_key`; None when it may not start now.

        `prior` is the row's expected cost before any row of the model finished (NaN or None:
        unknown). `worst`, when given, is what the prediction can cost at most (a server-side
        deadline × price per second, or unit prices × the input's upper bounds): it is reserved
        instead of the estimate, so what is in flight can never pass the cap. After None,
        `worth_waiting` says whether to retry after the next finish or to skip the row.
        """
        with self._lock:
            expected = self._amount(model_key, prior, worst)
            if self._cap is not None and not self._fits(model_key, expected, self._committed()):
                return None
            reservation = Reservation(model_key, None if expected is None else float(expected))
            self._in_flight[reservation] = expected if expected is not None else Decimal(0)
            if expected is None:
                self._probing.add(model_key)
            return reservation

    def worth_waiting(
        self, model_key: str, prior: float | None = None, *, worst: float | None = None
    ) -> bool:
        """After `try_start` refused: True when only rows in flight stand in the way (their
        finish may free room or give this model's first cost figure), False when the row can
        never start in this run (skip it as ``skipped_budget``)."""
        with self._lock:
            if self._cap is None or not self._in_flight:
                return False
            expected = self._amount(model_key, prior, worst)
            # With nothing in flight the commitment is what was spent: this is the final answer.
            return self._fits(model_key, expected, self._spent, ignore_probe=True)

    def skip_reason(
        self, model_key: str, prior: float | None = None, *, worst: float | None = None
    ) -> str:
        """One line for the ``error`` column of a row skipped by the budget."""
        with self._lock:
            expected = self._amount(model_key, prior, worst)
            cap = format_usd(float(self._cap)) if self._cap is not None else "none"
            spent = f"{format_usd(float(self._spent))} spent"
            if model_key in self._unpriceable and expected is None:
                return (
                    f"max_cost {cap}: the cost of {model_key} is unknown, so the cap cannot be "
                    "kept; pass hardware= or prices= for it"
                )
            if expected is None:
                return f"max_cost {cap} reached: {spent}"
            flight = sum(self._in_flight.values(), Decimal(0))
            return (
                f"max_cost {cap} reached: {spent} + {format_usd(float(flight))} in flight + "
                f"{format_usd(float(expected))} {'at most' if worst is not None else 'expected'} "
                "for this row would pass it"
            )

    def finish(self, reservation: Reservation, actual_cost: float) -> None:
        """Record that the prediction of `reservation` finished at `actual_cost` USD (NaN:
        unknown, its estimate is counted instead). Raises ConfigurationError when the
        reservation is not in flight in this budget (already finished, or from another)."""
        with self._lock:
            self._take(reservation)
            actual = None if actual_cost is None or math.isnan(actual_cost) else _dec(actual_cost)
            if actual is not None:
                self._spent += actual
                total, count = self._finished.get(reservation.model_key, (Decimal(0), 0))
                self._finished[reservation.model_key] = (total + actual, count + 1)
            elif reservation.expected_cost is not None:
                self._spent += _dec(reservation.expected_cost)
            else:
                self._unknown_cost_rows += 1
                if reservation.model_key not in self._finished:
                    self._unpriceable.add(reservation.model_key)

    def release(self, reservation: Reservation) -> None:
        """Give back a reservation whose prediction was never created (cache hit, invalid input):
        nothing is spent and the model's mean is unchanged. Raises ConfigurationError when the
        reservation is not in flight in this budget."""
        with self._lock:
            self._take(reservation)

    # -- internals (lock held) ----------------------------------------------------------------

    def _take(self, reservation: Reservation) -> None:
        if reservation not in self._in_flight:
            raise ConfigurationError(
                f"reservation for {reservation.model_key} is not in flight in this budget"
            )
        del self._in_flight[reservation]
        if reservation.expected_cost is None:
            self._probing.discard(reservation.model_key)

    def _committed(self) -> Decimal:
        return self._spent + sum(self._in_flight.values(), Decimal(0))

    def _amount(self, model_key: str, prior: float | None, worst: float | None) -> Decimal | None:
        if worst is not None and not math.isnan(worst) and worst >= 0:
            return _dec(worst)
        return self._expected(model_key, prior)

    def _expected(self, model_key: str, prior: float | None) -> Decimal | None:
        finished = self._finished.get(model_key)
        if finished is not None:
            total, count = finished
            return total / count
        if prior is None or math.isnan(prior) or prior < 0:
            return None
        return _dec(prior)

    def _fits(
        self, model_key: str, expected: Decimal | None, committed: Decimal, *, ignore_probe: bool = False
    ) -> bool:
        assert self._cap is not None
        if expected is not None:
            return committed + expected <= self._cap
        if model_key in self._unpriceable:
            return False
        if model_key in self._probing and not ignore_probe:
            return False
        # Unknown cost: start a probe only while some budget is left.
        return committed < self._cap


def _dec(value: float) -> Decimal:
    # Sum the decimal text of each figure so 10 × $0.001 is exactly $0.01, not just above it.
    return Decimal(repr(float(value)))
