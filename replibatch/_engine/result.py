"""`Row`: the typed result of one job, from its first outcome to the frame's columns.

Built once from what `replibatch._table.frame` makes of a prediction record (`prediction_row`,
`error_row`) or from a cache hit, then changed by attribute as the row's life goes on (cost,
localized output, the timeline stamps, the cache key); turned into the frame's columns in one
place, `Row.columns`, and into what the cache stores in another, `Row.stored`.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from replibatch._engine.dedupe import shared_row
from replibatch._table import frame as frames

__all__ = ["Row"]

_TOKEN_COLUMNS = frozenset(frames.TOKEN_COLUMNS)
_STORED = (
    "output", "status", "error", "prediction_id", "version", "queue_s", "predict_s", "latency_s",
    "cost_usd", "cost_basis",
)
_take = operator.itemgetter(*_STORED)


@dataclass(slots=True)
class Row:
    """One job's result: the result columns (`replibatch._table.frame.RESULT_COLUMNS`), the token
    columns its metrics reported, the client-clock timeline and its cache key."""

    status: str
    output: Any = None
    error: str | None = None
    prediction_id: str | None = None
    version: str | None = None
    queue_s: float | None = None
    predict_s: float | None = None
    latency_s: float | None = None
    cost_usd: float | None = None
    cost_basis: str | None = None
    cached: bool = False
    tokens: dict[str, Any] = field(default_factory=dict)  # the token columns reported, by name
    submitted_at: float | None = None  # epoch seconds of the create (None: nothing was sent)
    completed_at: float | None = None
    cache_key: str | None = None
    shared: bool = False  # the row shares an identical row's prediction

    @classmethod
    def from_columns(cls, values: Mapping[str, Any]) -> Row:
        """A row from result-column values (`prediction_row`, `error_row`, a cache entry's row);
        the run's own fields (timeline, key) start empty. Raises KeyError when `values` has no
        ``status``."""
        try:
            # The common case, every stored column present: one C-level lookup (a fully cached
            # run builds 100,000 rows this way).
            output, status, error, pid, version, queue, predict, latency, cost, basis = _take(values)
        except KeyError:
            get = values.get
            output, status, error, pid, version = (
                get("output"), values["status"], get("error"), get("prediction_id"), get("version")
            )
            queue, predict, latency = get("queue_s"), get("predict_s"), get("latency_s")
            cost, basis = get("cost_usd"), get("cost_basis")
        row = cls(status, output, error, pid, version, queue, predict, latency, cost, basis,
                  bool(values.get("cached", False)))
        if not _TOKEN_COLUMNS.isdisjoint(values):
            row.tokens = {k: values[k] for k in frames.TOKEN_COLUMNS if k in values}
        return row

    @classmethod
    def failed(cls, status: str, error: str, *, prediction_id: str | None = None) -> Row:
        """A row with no usable prediction (`frame.error_row`: one line, truncated). Raises
        ValueError when `status` is ``succeeded``."""
        return cls.from_columns(frames.error_row(status, error, prediction_id=prediction_id))

    def stored(self) -> dict[str, Any]:
        """What the cache keeps beside the record: the result and token columns, without
        ``cached`` and the timeline (those belong to the run that reads it)."""
        values: dict[str, Any] = {
            "output": self.output,
            "status": self.status,
            "error": self.error,
            "prediction_id": self.prediction_id,
            "version": self.version,
            "queue_s": self.queue_s,
            "predict_s": self.predict_s,
            "latency_s": self.latency_s,
            "cost_usd": self.cost_usd,
            "cost_basis": self.cost_basis,
        }
        values.update(self.tokens)
        return values

    def columns(self) -> dict[str, Any]:
        """The row as the frame's columns (`frame.assemble` reads it), timeline and key included."""
        values = self.stored()
        values["cached"] = self.cached
        values[frames.TIMELINE_COLUMNS[0]] = self.submitted_at
        values[frames.TIMELINE_COLUMNS[1]] = self.completed_at
        values[frames.CACHE_KEY_COLUMN] = self.cache_key
        return values

    def shared_by(self, leader: int) -> Row:
        """The row a job identical to row `leader` gets: the leader's result, cost counted on
        the leader (`replibatch._engine.dedupe.shared_row`)."""
        out = Row.from_columns(shared_row(self.columns(), leader))
        out.submitted_at, out.completed_at = self.submitted_at, self.completed_at
        out.shared = True
        return out
