"""What one prediction may cost at most, and the server-side deadline that makes it so (pure).

A budget that reserves the running mean is passed as soon as cost grows along the frame (a
sweep ordered by ascending ``max_tokens`` or steps): every prediction in flight costs more than
the mean of the ones before. So under ``max_cost`` each prediction is reserved at its worst case:

- priced per second: the prediction gets a ``Cancel-After`` deadline (Replicate stops it that
  long after creation, so ``predict_time`` cannot exceed it), and the worst case is deadline ×
  price per second. The deadline is the user's ``timeout`` when given, else `DEADLINE_FACTOR` ×
  the longest ``predict_time`` of this model seen in the run (or the price table's
  ``typical_predict_s``) — scaled up for a row that asks for more work than the rows seen
  (`work_size`: ``max_tokens``, ``num_outputs``, steps... multiplied), so an ascending sweep's
  later rows are not cut off. Before any figure exists, one probe row runs with a deadline that
  fits the budget left. replibatch cancels the prediction itself at that deadline; the
  ``Cancel-After`` sent with it is the same deadline but never under the spec's minimum of
  `CANCEL_AFTER_MINIMUM_S` (5 s), which stops it even if this process dies. So the cap holds
  while the process lives; a process killed mid-run can pass it by at most (5 s − deadline) ×
  price for each prediction in flight whose deadline was under 5 s. The reservation adds
  `CANCEL_LATENCY` (10%) for the time a cancel takes to land.
- priced per output: ``num_outputs`` (default 1) × the price.
- priced per token: ``max_tokens`` (or ``max_new_tokens``) × the output price + the prompt's
  UTF-8 bytes (at least its token count) × the input price. Without such a bound in the input
  the estimate is used and `Hold.bounded` is False (the cap is then kept only on average).
- not in the price table: no figure (the budget's probe logic applies).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from replibatch._spend.cost import PriceTable, expected_cost

__all__ = [
    "CANCEL_AFTER_MINIMUM_S",
    "DEADLINE_FACTOR",
    "Hold",
    "Seen",
    "last_chance_hold",
    "plan_hold",
    "work_size",
]

CANCEL_AFTER_MINIMUM_S = 5.0  # parameters_cancel_after_header: "The minimum allowed duration is 5 seconds."
DEADLINE_FACTOR = 6.0
CANCEL_LATENCY = 1.1
_TOKEN_BOUNDS = ("max_tokens", "max_new_tokens")
# Inputs that say how much work a prediction does (time grows with them).
_WORK_INPUTS = (
    "max_tokens", "max_new_tokens", "max_length", "num_outputs", "num_inference_steps", "steps",
    "num_frames", "duration", "seconds",
)


def work_size(input: Mapping[str, Any]) -> float:
    """The product of the work-sized inputs a row gives (1 when none): a relative size."""
    size = 1.0
    for name in _WORK_INPUTS:
        value = input.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            size *= float(value)
    return size


@dataclass
class Seen:
    """What finished rows of one model taught: the longest ``predict_time``, and the
    ``predict_time`` per unit of `work_size` of the biggest row seen."""

    longest_s: float = 0.0
    biggest_size: float = 0.0
    per_unit_s: float = 0.0

    def add(self, predict_s: float, size: float) -> None:
        self.longest_s = max(self.longest_s, predict_s)
        if size >= self.biggest_size:
            self.biggest_size, self.per_unit_s = size, predict_s / size

    def expect(self, size: float) -> float:
        """The predict time a row of `size` may take: the longest seen, or more if bigger."""
        return max(self.longest_s, self.per_unit_s * size)


@dataclass(frozen=True)
class Hold:
    """A prediction's reservation: `usd` (None: unknown), the deadline to send as
    ``Cancel-After`` (None: none), and whether `usd` is a true upper bound."""

    usd: float | None
    deadline_s: float | None
    bounded: bool


def plan_hold(
    table: PriceTable,
    model_ref: str,
    input: Mapping[str, Any],
    *,
    timeout: float | None,
    seen: Seen | None,
    budget_left: float | None,
    minimum_s: float = 0.05,
) -> Hold:
    """The hold for one row (see the module docstring). `budget_left` is the cap minus what is
    spent and reserved (None: no cap); `minimum_s` is the shortest deadline given. Never
    raises."""
    price = table.lookup(model_ref)
    if price is None:
        return Hold(None, timeout, False)
    if price.kind == "per_second" and price.usd_per_second is not None:
        per_s = float(price.usd_per_second)
        if timeout is not None:
            deadline: float | None = timeout
        elif seen is not None:
            deadline = DEADLINE_FACTOR * seen.expect(work_size(input))
        elif price.typical_predict_s is not None:
            deadline = DEADLINE_FACTOR * float(price.typical_predict_s)
        elif budget_left is not None and per_s > 0:
            # The probe: at most what is left (a hair under, so rounding cannot refuse it).
            deadline = 0.999 * budget_left / (per_s * CANCEL_LATENCY)
        else:
            deadline = None
        if deadline is None:
            return Hold(None, None, False)
        deadline = max(deadline, minimum_s)
        return Hold(deadline * per_s * CANCEL_LATENCY, deadline, True)
    estimate = expected_cost(table, model_ref, input)
    if estimate is None or math.isnan(estimate):
        return Hold(None, timeout, False)
    if price.kind == "per_output":
        return Hold(estimate, timeout, True)
    bounded = any(isinstance(input.get(k), int) for k in _TOKEN_BOUNDS)
    return Hold(estimate, timeout, bounded)


def last_chance_hold(
    table: PriceTable,
    model_ref: str,
    input: Mapping[str, Any],
    *,
    seen: Seen | None,
    budget_left: float | None,
) -> Hold | None:
    """When nothing is in flight and a row's worst case no longer fits, the rest of the budget
    may still buy it: a per-second row runs with the deadline what is left pays for, provided
    that is at least 1.5 × the time such a row is expected to take. None otherwise. (So the end
    of a capped frame uses the cap instead of stopping one worst case short.)"""
    price = table.lookup(model_ref)
    if price is None or price.kind != "per_second" or not price.usd_per_second or seen is None:
        return None
    if budget_left is None or budget_left <= 0:
        return None
    per_s = float(price.usd_per_second)
    deadline = 0.999 * budget_left / (per_s * CANCEL_LATENCY)
    if deadline < 1.5 * seen.expect(work_size(input)):
        return None
    return Hold(deadline * per_s * CANCEL_LATENCY, deadline, True)
