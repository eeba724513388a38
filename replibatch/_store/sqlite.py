"""The database under the result cache: diskcache's SQLite table, read and written as JSON bytes.

diskcache gives the transactions, the WAL mode and the per-thread connections; this module adds
what replibatch needs of it: a Disk that never pickles, settings that never evict (results cost
money), a check of the schema we read directly, and a many-keys-per-query read.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diskcache
import numpy as np

__all__ = [
    "SQL_CHUNK",
    "WRITE_CHUNK",
    "CorruptEntry",
    "chunks",
    "dumps",
    "encode_json",
    "json_default",
    "loads",
    "open_database",
    "select",
]

# Results cost money: never evict or cull them behind the user's back.
_DISKCACHE_SETTINGS: dict[str, Any] = {
    "eviction_policy": "none",
    "cull_limit": 0,
    "statistics": 0,
    "tag_index": 0,
    # Map up to 1 GiB of the database: reading many entries is ~30% faster than through read().
    "sqlite_mmap_size": 2**30,
}
# Stays under SQLite's historical limit of 999 bound parameters per statement.
SQL_CHUNK = 900
WRITE_CHUNK = 1000
# The columns of diskcache 5's table that `select` and the management queries read directly.
_COLUMNS_USED = {"key", "raw", "tag", "store_time", "expire_time", "mode", "filename", "value"}


try:  # optional: parses entries several times faster than json; the results are the same
    import orjson

    _fast_loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = json.loads


def loads(data: bytes) -> Any:
    """Parse stored JSON. Raises ValueError (or TypeError) for text that is not JSON."""
    try:
        return _fast_loads(data)
    except ValueError:
        if _fast_loads is json.loads:
            raise
        # orjson refuses a few things json accepts (lone surrogates written with surrogatepass).
        return json.loads(data)


def json_default(value: Any) -> Any:
    """numpy scalars as Python ones; TypeError for anything else that is not JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON and cannot be cached")


dumps: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=json_default, allow_nan=True
).encode


def encode_json(value: Any) -> bytes:
    """The bytes stored for a value (entries and pending markers alike): compact JSON, numpy
    scalars as numbers, lone surrogates kept (surrogatepass: one odd character in a model's
    output must not make its row unstorable). Raises TypeError for a value that is not JSON."""
    return dumps(value).encode("utf-8", "surrogatepass")


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CorruptEntry(Exception):
    """A stored value that is not what we write (unreadable, or not raw JSON bytes)."""


class _JSONDisk(diskcache.Disk):
    """diskcache serialisation restricted to string keys and byte values: never pickles."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"cache keys must be str, got {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise CorruptEntry("pickled key refused")
        return key

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if type(value) is not bytes:
            raise TypeError(f"cache values must be encoded JSON, got {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode not in (diskcache.core.MODE_RAW, diskcache.core.MODE_BINARY):
            # A pickle here was not written by us; unpickling it could run arbitrary code.
            raise CorruptEntry(f"unexpected storage mode {mode}")
        return super().fetch(mode, filename, value, read)


def open_database(directory: Path, unusable: Callable[[object], Exception]) -> diskcache.Cache:
    """Open (creating it private to the user if missing) the database in `directory`.

    Raises ``unusable(reason)`` when the directory cannot be created or written, the database
    cannot be opened, or its schema is not diskcache 5's.
    """
    try:
        if not directory.exists():
            directory.mkdir(parents=True, mode=0o700)
            # mkdir's mode is filtered by the umask; results and files are the user's own.
            directory.chmod(0o700)
        # Fail here, once and clearly, rather than on the first write in the middle of a run.
        with tempfile.TemporaryFile(dir=directory):
            pass
        cache = diskcache.Cache(str(directory), disk=_JSONDisk, **_DISKCACHE_SETTINGS)
    except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
        raise unusable(getattr(exc, "strerror", None) or exc) from None
    columns = {row[1] for row in cache._sql("PRAGMA table_info(Cache)").fetchall()}
    if not _COLUMNS_USED.issubset(columns):
        cache.close()
        raise unusable("unknown diskcache schema")
    return cache


def select(db: diskcache.Cache, keys: list[str]) -> Iterator[tuple[str, bytes | CorruptEntry]]:
    """Yield (key, stored bytes or a CorruptEntry) for the stored ones among `keys`.

    diskcache's API runs one query per key; this reads its table directly, many keys per query.
    It relies on diskcache 5's schema (checked by `open_database`) and reads through diskcache's
    own per-thread connection and Disk, which also fetches values that diskcache put in separate
    files. No expiry is ever set, but an expired row is skipped like diskcache would.
    """
    sql = db._sql
    fetch = db._disk.fetch
    now = time.time()
    for chunk in chunks(keys, SQL_CHUNK):
        query = (
            "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN "
            f"({','.join('?' * len(chunk))}) AND (expire_time IS NULL OR expire_time > ?)"
        )
        for key, mode, filename, value in sql(query, (*chunk, now)).fetchall():
            try:
                yield key, fetch(mode, filename, value, False)
            except (OSError, CorruptEntry) as exc:
                yield key, CorruptEntry(str(exc))
