"""A row's hold on its cache key: the pending marker (a lease among live runs), waiting for
another run that holds it, and the result stored (or the marker dropped) at the end."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import anyio

from replibatch._engine.clock import Clock
from replibatch._engine.result import Row
from replibatch._engine.target import Target
from replibatch._store.cache import CacheEntry, ResultCache
from replibatch._store.cache_writer import CacheWriter
from replibatch._store.markers import Owner, PendingMarker, is_held_elsewhere
from replibatch._table.frame import Job
from replibatch._table.inputs import content_hash, map_files

__all__ = ["LEASE_POLL_S", "Leases", "cached_row"]

LEASE_POLL_S = 0.5  # how often a row waiting on another run's lease looks at the cache


def cached_row(entry: CacheEntry) -> Row:
    """The result row of a cache hit."""
    row = Row.from_columns(entry.row)
    row.cached = True
    return row


class Leases:
    """Marker writes and result storage of one run, through its write-behind `CacheWriter`."""

    def __init__(self, cache: ResultCache, writer: CacheWriter, owner: Owner, clock: Clock) -> None:
        self._cache = cache
        self._writer = writer
        self._owner = owner
        self._clock = clock

    def held_elsewhere(self, marker: PendingMarker) -> bool:
        """True when another live run holds `marker`."""
        return is_held_elsewhere(marker, self._owner)

    async def mark(
        self,
        key: str,
        prediction_id: str,
        job: Job,
        target: Target,
        *,
        sent_after: datetime | None = None,
        sent_input: dict[str, Any] | None = None,
        tokens: Mapping[str, Any] | None = None,
    ) -> bool:
        """Write the row's marker. The one written before the create (`sent_after` given) is a
        lease claim: False when another live run holds the key (nothing was written).
        `tokens`: which token made the prediction, or may send its create
        (`replibatch._engine.tokenpool`: ``MARKER_TOKEN`` / ``MARKER_TOKENS``), kept in `meta`."""
        meta: dict[str, Any] = {"model": job.model, "version": target.identity, **(tokens or {})}
        if sent_after is not None:
            meta["sent_at"] = sent_after.isoformat()
            meta["sent_input"] = sent_input
        # Only the marker written before the create must be on disk before we go on.
        return await self._writer.mark(key, prediction_id, meta, durable=sent_after is not None)

    def clear(self, key: str) -> None:
        """Drop the row's marker: nothing was created, the next run starts the row afresh."""
        self._writer.clear(key)

    async def await_other_run(self, key: str) -> tuple[Row | None, PendingMarker | None]:
        """Wait while another live run holds `key`'s marker. Returns ``(row, None)`` when its
        result arrived in the cache, ``(None, marker)`` when its owner died (re-attach to it),
        ``(None, None)`` when the marker went away without a result (the row is free)."""
        while True:
            await self._clock.sleep(LEASE_POLL_S)
            entry = await anyio.to_thread.run_sync(self._cache.get, key)
            if entry is not None:
                return cached_row(entry), None
            found = await anyio.to_thread.run_sync(self._cache.pending, key)
            if found is None:
                return None, None
            marker = PendingMarker.from_json(found)
            if not is_held_elsewhere(marker, self._owner):
                return None, marker

    def store(self, key: str, job: Job, target: Target, record: dict[str, Any], row: Row) -> None:
        """Keep a succeeded result; for anything else only forget the pending marker, so the
        next run tries the row again instead of re-attaching to a failure."""
        if row.status != "succeeded":
            self._writer.clear(key)
            return
        entry = CacheEntry(
            model=job.model,
            version=target.identity,
            # File inputs by content hash beside the cached result, never bytes.
            input=map_files(job.input, content_hash),
            sample=job.sample,
            record=record,
            row=row.stored(),
        )
        self._writer.put(key, entry)
