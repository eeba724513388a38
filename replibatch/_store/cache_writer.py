"""Group commit for the cache during a run: many rows' writes in one SQLite transaction.

The writes of many rows go to SQLite in one transaction, off the event loop. A marker written
before a create is a lease claim (`replibatch._store.markers`): it is awaited until it is on disk (a
killed run must find it) and `CacheWriter.mark` says whether it was taken or another live run
holds the key. Results are not awaited (their marker already makes them recoverable). Markers
this run holds get their heartbeat refreshed every `markers.HEARTBEAT_S` seconds by `beat`.
"""

from __future__ import annotations

import anyio

from replibatch._store.cache import CacheEntry, ResultCache
from replibatch._store.markers import HEARTBEAT_S, Owner

__all__ = ["CacheWriter"]


class CacheWriter:
    """Group commit for the cache: the writes of many rows go to SQLite in one transaction,
    off the event loop. A marker written before a create is a lease claim (`replibatch._store.markers`):
    it is awaited until it is on disk (a killed run must find it) and `mark` says whether it was
    taken or another live run holds the key. Results are not awaited (their marker already
    makes them recoverable). Markers this run holds get their heartbeat refreshed."""

    def __init__(self, cache: ResultCache, owner: Owner, refresh: bool = False) -> None:
        self.cache = cache
        self.owner = owner
        self.refresh = refresh
        self.pending: dict[str, tuple[str, dict]] = {}
        self.claims: set[str] = set()
        self.results: dict[str, CacheEntry] = {}
        self.cleared: set[str] = set()
        self.held: dict[str, tuple[str, dict]] = {}  # markers this run wrote and still holds
        self.refused: set[str] = set()
        self.ended = anyio.Event()
        self.wake = anyio.Event()
        self.flushed = anyio.Event()
        self.closing = False

    async def mark(self, key: str, prediction_id: str, meta: dict, *, durable: bool) -> bool:
        """Write the marker; with `durable`, wait until it is on disk and return False when the
        key was held by another live run (nothing written), True otherwise."""
        self.pending[key] = (prediction_id, meta)
        self.held[key] = (prediction_id, meta)
        if durable:
            self.claims.add(key)
        self.cleared.discard(key)
        done = self.flushed
        self.wake.set()
        if durable:
            await done.wait()
            if key in self.refused:
                self.refused.discard(key)
                self.held.pop(key, None)
                return False
        return True

    def put(self, key: str, entry: CacheEntry) -> None:
        self.results[key] = entry
        self.held.pop(key, None)
        self.wake.set()

    def clear(self, key: str) -> None:
        self.pending.pop(key, None)
        self.held.pop(key, None)
        self.cleared.add(key)
        self.wake.set()

    def heartbeat(self) -> None:
        """Rewrite every held marker with a fresh ``marked_at`` (with the next flush)."""
        for key, value in self.held.items():
            self.pending.setdefault(key, value)
        self.wake.set()

    async def run(self) -> None:
        while not (self.closing and not self._has_work()):
            await self.wake.wait()
            self.wake = anyio.Event()
            await self.flush()

    async def beat(self) -> None:
        """Refresh the heartbeat of held markers until the run ends (a task of the run)."""
        while not self.closing:
            with anyio.move_on_after(HEARTBEAT_S):
                await self.ended.wait()
            if not self.closing:
                self.heartbeat()

    async def flush(self) -> None:
        pending, results, cleared, claims = self.pending, self.results, self.cleared, self.claims
        self.pending, self.results, self.cleared, self.claims = {}, {}, set(), set()
        done, self.flushed = self.flushed, anyio.Event()
        try:
            if pending or results or cleared:
                self.refused |= await anyio.to_thread.run_sync(
                    lambda: self.cache.write_batch(
                        pending, results, cleared, owner=self.owner, claims=claims,
                        results_block=not self.refresh,
                    )
                )
        finally:
            done.set()

    def close(self) -> None:
        self.closing = True
        self.ended.set()
        self.wake.set()

    def _has_work(self) -> bool:
        return bool(self.pending or self.results or self.cleared)
