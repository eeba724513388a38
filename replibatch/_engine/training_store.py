"""What ``rb.train`` keeps on disk for a row: its intent marker (a lease), then its result.

Markers use the cache's pending-marker store (`replibatch._store.markers`): one is written, and
on disk, BEFORE a training's create is sent, holding what will be sent and when; once the
create answers it names the training id. While this run lives it re-writes its markers every
`HEARTBEAT_S` seconds, so another run on the same cache waits for the result instead of
creating a duplicate; a marker whose owner died (``kill -9``) is re-attached by the next run.
A succeeded training is stored as a cache entry (its row and record), which drops the marker;
anything else only drops the marker, so a re-run trains that row again. Every disk call runs in
a worker thread. `store` None (``cache=False``): nothing is kept, every call does nothing.
"""

from __future__ import annotations

from typing import Any

import anyio

from replibatch._store.cache import CacheEntry, ResultCache
from replibatch._store.markers import HEARTBEAT_S, Owner, is_held_elsewhere
from replibatch._table.inputs import content_hash, map_files
from replibatch._table.training_plan import TrainingJob

__all__ = ["LEASE_POLL_S", "TrainingStore"]

LEASE_POLL_S = 0.5  # how often a row waiting on another run's lease looks at the cache


class TrainingStore:
    """Markers and results of one run's training rows (see the module docstring)."""

    def __init__(self, store: ResultCache | None, owner: Owner, *, refresh: bool = False) -> None:
        self.store = store
        self.owner = owner
        self.refresh = refresh  # a cached result does not block a new lease (it is replaced)
        self.held: dict[str, tuple[str, dict]] = {}  # key -> (training id, meta) we hold
        self.unsent: set[str] = set()  # keys whose marker is written, create not yet sent

    async def mark(self, key: str, training_id: str, meta: dict, *, claim: bool) -> bool:
        """Write the row's marker (durable before this returns). With `claim` it is a lease:
        False when another live run holds the key or a result is there (nothing written)."""
        if self.store is None:
            return True
        store = self.store
        refused = await anyio.to_thread.run_sync(
            lambda: store.write_batch(
                pending={key: (training_id, meta)}, owner=self.owner,
                claims={key} if claim else (), results_block=not self.refresh,
            )
        )
        if key in refused:
            return False
        self.held[key] = (training_id, meta)
        return True

    async def forget(self, key: str | None) -> None:
        """Drop the row's marker: nothing is left to re-attach to."""
        if key is None or self.store is None:
            return
        self.held.pop(key, None)
        self.unsent.discard(key)
        store = self.store
        await anyio.to_thread.run_sync(lambda: store.clear_pending(key))

    async def heartbeat(self) -> None:
        """Re-write the markers this run holds every `HEARTBEAT_S`: its leases stay live."""
        while True:
            await anyio.sleep(HEARTBEAT_S)
            if self.store is not None and self.held:
                await anyio.to_thread.run_sync(self._rewrite, self.store, dict(self.held))

    def _rewrite(self, store: ResultCache, held: dict[str, tuple[str, dict]]) -> None:
        store.write_batch(pending=held, owner=self.owner)

    def pending(self, key: str) -> dict[str, Any] | None:
        return self.store.pending(key) if self.store is not None else None

    async def keep(
        self, key: str | None, job: TrainingJob, record: dict, row: dict, *, trainer: str,
        version: str,
    ) -> None:
        """Store a succeeded training under `key` (its marker goes); else drop the marker."""
        if key is None or self.store is None:
            return
        self.held.pop(key, None)
        if row["status"] != "succeeded":
            await self.forget(key)
            return
        entry = CacheEntry(
            model=trainer, version=f"training:{version}",
            input={"destination": job.destination, "input": map_files(job.input, content_hash)},
            record=record, row={k: v for k, v in row.items() if k != "cached"},
        )
        store = self.store
        await anyio.to_thread.run_sync(lambda: store.write_batch(results={key: entry}))

    async def await_other_run(self, key: str) -> dict | None:
        """Wait while another live run holds `key`: its cached row, or None once it let go."""
        if self.store is None:
            return None
        store = self.store
        while True:
            entry = await anyio.to_thread.run_sync(store.get, key)
            if entry is not None:
                row = entry.row
                row["cached"] = True
                return row
            marker = await anyio.to_thread.run_sync(store.pending, key)
            if marker is None or not is_held_elsewhere(marker, self.owner):
                return None
            await anyio.sleep(LEASE_POLL_S)
