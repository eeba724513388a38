"""Identical jobs in one run share one prediction (pure).

Two rows with the same cache key (same resolved model, same input, same ``sample``) would buy
the same result twice and then be served as one cache entry anyway. The run creates one
prediction for the first such row and fans its result out to the others: they get the same
output and prediction id, ``cost_usd`` 0 (the prediction is paid once, on the first row) and a
``cost_basis`` naming the row that paid. The run's summary counts them as ``shared``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Groups", "group_identical", "shared_row"]


@dataclass
class Groups:
    """`leaders`: the positions that run; `followers`: leader -> positions that share it."""

    leaders: list[int] = field(default_factory=list)
    followers: dict[int, list[int]] = field(default_factory=dict)

    @property
    def shared(self) -> int:
        return sum(len(v) for v in self.followers.values())


def group_identical(positions: Sequence[int], keys: Sequence[str | None]) -> Groups:
    """Group `positions` by ``keys[position]``; a None key (unkeyable row) always runs alone."""
    groups = Groups()
    first: dict[str, int] = {}
    for position in positions:
        key = keys[position]
        leader = first.get(key) if key is not None else None
        if leader is None:
            if key is not None:
                first[key] = position
            groups.leaders.append(position)
        else:
            groups.followers.setdefault(leader, []).append(position)
    return groups


def shared_row(row: dict[str, Any], leader: int, label: Any = None) -> dict[str, Any]:
    """The row a follower of `leader` gets: the leader's result, cost counted on the leader."""
    out = dict(row)
    cost = row.get("cost_usd")
    if isinstance(cost, (int, float)) and not math.isnan(cost):
        where = f"row {label!r}" if label is not None else f"row #{leader}"
        out["cost_usd"] = 0.0
        out["cost_basis"] = f"shared the prediction of identical {where} (paid once there)"
    out["shared"] = True
    return out
