"""Managing a result cache as a whole: what it holds (`CacheInfo`) and clearing results.

Clearing never leaves an output file no result uses: files are pruned after the entries go,
sparing those a concurrent run has just written and not yet referenced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import diskcache

from replibatch._store.entries import entry_files
from replibatch._store.filestore import FileStore
from replibatch._store.pending import PENDING_PREFIX
from replibatch._store.sqlite import WRITE_CHUNK, CorruptEntry, chunks

__all__ = ["PRUNE_GRACE_S", "CacheInfo", "clear_entries", "describe"]

# A run stores a result within seconds of downloading its files; ten minutes spares it amply.
PRUNE_GRACE_S = 600.0


@dataclass(frozen=True)
class CacheInfo:
    """What a cache holds: result entries (in total and by model), pending markers, disk use."""

    directory: Path
    entries: int
    pending: int
    bytes: int
    files: int
    file_bytes: int
    entries_by_model: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        models = ", ".join(f"{m}: {n}" for m, n in sorted(self.entries_by_model.items()))
        return (
            f"{self.directory}: {self.entries} entries ({models or 'none'}), "
            f"{self.pending} pending, {self.files} files, {self.bytes / 1e6:.1f} MB on disk"
        )


def describe(db: diskcache.Cache, files: FileStore, directory: Path) -> CacheInfo:
    """Count entries (by model), pending markers and bytes on disk (database and files)."""
    by_model: dict[str, int] = {}
    pending = 0
    for is_pending, tag, count in db._sql(
        "SELECT substr(key, 1, ?) = ?, tag, COUNT(*) FROM Cache WHERE raw = 1 GROUP BY 1, 2",
        (len(PENDING_PREFIX), PENDING_PREFIX),
    ).fetchall():
        if is_pending:
            pending += count
        else:
            name = tag if isinstance(tag, str) else ""
            by_model[name] = by_model.get(name, 0) + count
    file_count, file_bytes = files.usage()
    total = 0
    for root, _, names in os.walk(directory):
        for name in names:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return CacheInfo(
        directory=directory,
        entries=sum(by_model.values()),
        pending=pending,
        bytes=total,
        files=file_count,
        file_bytes=file_bytes,
        entries_by_model=by_model,
    )


def clear_entries(
    db: diskcache.Cache,
    files: FileStore,
    clock: Callable[[], float],
    model: str | None = None,
    older_than: float | timedelta | None = None,
) -> int:
    """Remove results (and pending markers) matching every filter given; return the number of
    results removed.

    `model` is the reference text stored with the entry; `older_than` (seconds or timedelta)
    selects entries stored longer ago than that by `clock`. With no filter everything goes,
    output files included; otherwise every output file no entry references any more (and
    untouched for `PRUNE_GRACE_S`, to spare a concurrent run that just downloaded it) is deleted
    too, even when no entry matched: files left by earlier clears are reclaimed then. Raises
    ValueError for a negative `older_than`.
    """
    if isinstance(older_than, timedelta):
        older_than = older_than.total_seconds()
    if older_than is not None and older_than < 0:
        raise ValueError(f"older_than must be >= 0, got {older_than!r}")
    if model is None and older_than is None:
        removed = _result_count(db)
        db.clear(retry=True)
        files.prune(set(), grace_seconds=0.0)
        return removed
    conditions: list[str] = ["raw = 1"]
    params: list[str | float] = []
    if model is not None:
        conditions.append("tag = ?")
        params.append(model)
    if older_than is not None:
        conditions.append("store_time < ?")
        params.append(clock() - older_than)
    keys = [
        key
        for (key,) in db._sql(f"SELECT key FROM Cache WHERE {' AND '.join(conditions)}", params).fetchall()
    ]
    removed = 0
    for chunk in chunks(keys, WRITE_CHUNK):
        with db.transact(retry=True):
            for key in chunk:
                if db.delete(key) and not key.startswith(PENDING_PREFIX):
                    removed += 1
    # Pruned even when nothing matched: an earlier clear's files may be past the grace now.
    files.prune(_referenced_files(db), grace_seconds=PRUNE_GRACE_S)
    return removed


def _result_count(db: diskcache.Cache) -> int:
    ((count,),) = db._sql(
        "SELECT COUNT(*) FROM Cache WHERE raw = 1 AND substr(key, 1, ?) != ?",
        (len(PENDING_PREFIX), PENDING_PREFIX),
    ).fetchall()
    return int(count)


def _referenced_files(db: diskcache.Cache) -> set[str]:
    referenced: set[str] = set()
    rows = db._sql(
        "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND substr(key, 1, ?) != ?",
        (len(PENDING_PREFIX), PENDING_PREFIX),
    ).fetchall()
    fetch = db._disk.fetch
    for _key, mode, filename, value in rows:
        try:
            referenced.update(entry_files(fetch(mode, filename, value, False)))
        except (OSError, ValueError, TypeError, AttributeError, CorruptEntry):
            continue
    return referenced
