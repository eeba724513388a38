"""The result cache: prediction results on disk, shared by notebooks and processes.

A `ResultCache` is a directory holding a diskcache SQLite database (``cache.db``, WAL mode, no
eviction: results cost money) and a content-addressed `FileStore` of output files (``files/``).
It is safe to use from several threads, notebooks and processes at once.

Stored values are UTF-8 JSON, never pickles. A result entry is a header line and the record:

    {"key_format":"rb1","model":...,"version":...,"input":{...},"sample":0,"status":"succeeded",
     "stored_at":1732170000.0,"files":["files/ab/<sha256>.png"],"row":{...}}\n
    zlib.compress(<the prediction record JSON, as Replicate returned it>)

The header (readable as is, e.g. with the sqlite3 shell) is all a cache hit needs. The record is
compressed (LLM records repeat the output as a token list, plus logs) and decompressed and parsed
only when asked for, which keeps reading many entries fast.

In ``row``, an output file is ``{"$rb_file": "files/ab/<sha256>.png", "url": <URL or null>}``,
relative to the cache directory so a moved cache keeps working;
it is read back as an absolute `OutputFile`. Missing numbers (NaN) in the row are stored as null.

Pending markers (``pending:<key>``, value ``{"prediction_id":...,"meta":{...},"marked_at":...}``)
live in the same database under their own key prefix and are never served as results.

Entries are keyed by `replibatch._store.keys.cache_key`. Secrets never reach the cache: only the JSON
values given here are stored (headers or client objects are not JSON and are refused), and
secret-looking top-level fields (``api_token``, ``authorization``, ``headers``, ``token``) are
dropped from records and pending metadata.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import diskcache
import numpy as np
import platformdirs

from replibatch._store.filestore import FileStore, OutputFile
from replibatch._store.gc import paused as gc_paused
from replibatch._store.keys import KEY_FORMAT, canonical_value
from replibatch._store.markers import Owner, PendingMarker, is_held_elsewhere
from replibatch._store.markers import encode as encode_marker
from replibatch.errors import ConfigurationError

__all__ = [
    "CACHE_DIR_ENV",
    "CacheEntry",
    "CacheInfo",
    "CacheWarning",
    "ResultCache",
    "cache_directory",
    "cache_info",
    "clear_cache",
    "default_cache_dir",
    "open_cache",
]

CACHE_DIR_ENV = "REPLIBATCH_CACHE_DIR"
_PENDING_PREFIX = "pending:"
_FILE_MARK = "$rb_file"
_SECRET_FIELDS = frozenset({"api_token", "authorization", "headers", "token"})
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
_SQL_CHUNK = 900
_WRITE_CHUNK = 1000
_COLUMNS_USED = {"key", "raw", "tag", "store_time", "expire_time", "mode", "filename", "value"}


try:  # optional: parses entries several times faster than json; the results are the same
    import orjson

    _fast_loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = json.loads


def _loads(data: bytes) -> Any:
    try:
        return _fast_loads(data)
    except ValueError:
        if _fast_loads is json.loads:
            raise
        # orjson refuses a few things json accepts (lone surrogates written with surrogatepass).
        return json.loads(data)


class CacheWarning(UserWarning):
    """A cache entry could not be read and was treated as a miss."""


class _CorruptEntry(Exception):
    pass


class _JSONDisk(diskcache.Disk):
    """diskcache serialisation restricted to string keys and byte values: never pickles."""

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"cache keys must be str, got {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise _CorruptEntry("pickled key refused")
        return key

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if type(value) is not bytes:
            raise TypeError(f"cache values must be encoded JSON, got {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode not in (diskcache.core.MODE_RAW, diskcache.core.MODE_BINARY):
            # A pickle here was not written by us; unpickling it could run arbitrary code.
            raise _CorruptEntry(f"unexpected storage mode {mode}")
        return super().fetch(mode, filename, value, read)


class CacheEntry:
    """One cached result: what ran (`model`, `version`, `input`, `sample`), the prediction
    `record` (parsed lazily), the result columns `row`, its `status` and `stored_at`.

    Raises TypeError when `row` or `record` is not a dict.
    """

    __slots__ = (
        "_packed_record",
        "_record",
        "input",
        "key_format",
        "model",
        "row",
        "sample",
        "status",
        "stored_at",
        "version",
    )

    def __init__(
        self,
        *,
        model: str,
        version: str | None,
        input: Mapping[str, Any],
        record: Mapping[str, Any],
        row: Mapping[str, Any],
        sample: int = 0,
        status: str | None = None,
        stored_at: float | None = None,
    ) -> None:
        if not isinstance(row, Mapping) or not isinstance(record, Mapping):
            raise TypeError("row and record must be dicts")
        self.model = model
        self.version = version
        self.input = dict(input)
        self.sample = int(sample)
        self.status = status if status is not None else row.get("status") or record.get("status")
        self.row = dict(row)
        self.stored_at = stored_at
        self.key_format = KEY_FORMAT
        self._record: dict[str, Any] | None = dict(record)
        self._packed_record: bytes | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The prediction record as Replicate returned it (parsed on first access).

        Raises ValueError when the stored record is not valid JSON.
        """
        if self._record is None:
            try:
                self._record = json.loads(zlib.decompress(self._packed_record or b""))
            except zlib.error as exc:
                raise ValueError(f"stored record is corrupted ({exc})") from None
            self._packed_record = None
        return self._record

    def to_dict(self) -> dict[str, Any]:
        """The entry as a plain dict (the suggested entry shape)."""
        return {
            "key_format": self.key_format,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "sample": self.sample,
            "status": self.status,
            "record": self.record,
            "row": self.row,
            "stored_at": self.stored_at,
        }

    def __repr__(self) -> str:
        return (
            f"CacheEntry(model={self.model!r}, version={self.version!r}, sample={self.sample}, "
            f"status={self.status!r})"
        )


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


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON and cannot be cached")


_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_json_default, allow_nan=True
).encode


def _without_secrets(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if str(k).lower() not in _SECRET_FIELDS}


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_key(key: Any) -> str:
    if type(key) is not str or key.startswith(_PENDING_PREFIX):
        raise ValueError(f"not a result key: {key!r}")
    return key


def default_cache_dir() -> Path:
    """``$REPLIBATCH_CACHE_DIR`` if set, else the platform's user cache dir for replibatch."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("replibatch", appauthor=False))


# A run stores a result within seconds of downloading its files; ten minutes spares it amply.
_PRUNE_GRACE_S = 600.0


class ResultCache:
    """Results and output files in `directory` (created private to the user if missing).

    Raises ConfigurationError, naming the directory, when it cannot be created or written.
    `clock` (epoch seconds) is injectable for tests of ``stored_at`` and ``clear(older_than=)``.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = Path(directory).expanduser().absolute()
        self._clock = clock
        self._cache = self._open(self.directory)
        self.files = FileStore(self.directory)

    @staticmethod
    def _open(directory: Path) -> diskcache.Cache:
        def unusable(reason: object) -> ConfigurationError:
            return ConfigurationError(
                f"cache directory {directory} is not usable ({reason}); set {CACHE_DIR_ENV} "
                "to a writable directory or pass cache=False (--no-cache on the command line)"
            )

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

    def close(self) -> None:
        """Close this thread's database connection (it reopens on next use)."""
        self._cache.close()

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultCache({str(self.directory)!r})"

    # -- reading -----------------------------------------------------------------------------

    def _select(self, keys: list[str]) -> Iterator[tuple[str, Any]]:
        """Yield (key, stored text or a _CorruptEntry) for the stored ones among `keys`.

        diskcache's API runs one query per key; this reads its table directly, many keys per
        query. It relies on diskcache 5's schema (checked when the cache is opened) and reads
        through diskcache's own per-thread connection and Disk, which also fetches values that
        diskcache put in separate files. No expiry is ever set, but an expired row is skipped
        like diskcache would.
        """
        sql = self._cache._sql
        fetch = self._cache._disk.fetch
        now = time.time()
        for chunk in _chunks(keys, _SQL_CHUNK):
            query = (
                "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN "
                f"({','.join('?' * len(chunk))}) AND (expire_time IS NULL OR expire_time > ?)"
            )
            for key, mode, filename, value in sql(query, (*chunk, now)).fetchall():
                try:
                    yield key, fetch(mode, filename, value, False)
                except (OSError, _CorruptEntry) as exc:
                    yield key, _CorruptEntry(str(exc))

    def _decode(self, text: Any) -> CacheEntry:
        if isinstance(text, _CorruptEntry):
            raise text
        if not isinstance(text, bytes):
            raise _CorruptEntry("value is not bytes")
        head, _, packed_record = text.partition(b"\n")
        try:
            header = _loads(head)
            row = header["row"]
            files = header.get("files")
            if files:
                row = self._resolve_files(row)
            entry = CacheEntry.__new__(CacheEntry)
            entry.model = header["model"]
            entry.version = header["version"]
            entry.input = header["input"]
            entry.sample = header["sample"]
            entry.status = header["status"]
            entry.stored_at = header["stored_at"]
            entry.key_format = header["key_format"]
            entry.row = row
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _CorruptEntry(f"unreadable entry ({type(exc).__name__}: {exc})") from None
        if type(row) is not dict or type(entry.status) is not str:
            raise _CorruptEntry("unreadable entry (bad row or status)")
        entry._record = None
        entry._packed_record = packed_record
        return entry

    def _resolve_files(self, value: Any) -> Any:
        if isinstance(value, dict):
            if _FILE_MARK in value:
                file = self.files.resolve(value[_FILE_MARK], value.get("url"))
                if not file.path.is_file():
                    raise ValueError(f"output file {value[_FILE_MARK]} is missing")
                return file
            return {k: self._resolve_files(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve_files(v) for v in value]
        return value

    def _read(
        self, keys: Iterable[str], statuses: Collection[str] | None, stacklevel: int
    ) -> dict[str, CacheEntry]:
        wanted = list(dict.fromkeys(_check_key(k) for k in keys))
        found: dict[str, CacheEntry] = {}
        corrupt: list[tuple[str, str]] = []
        status_set = None if statuses is None else frozenset(statuses)
        with gc_paused(len(wanted)):
            for key, text in self._select(wanted):
                try:
                    entry = self._decode(text)
                except _CorruptEntry as exc:
                    corrupt.append((key, str(exc)))
                    continue
                if status_set is None or entry.status in status_set:
                    found[key] = entry
        if corrupt:
            key, reason = corrupt[0]
            warnings.warn(
                f"{len(corrupt)} unreadable cache entr{'y' if len(corrupt) == 1 else 'ies'} in "
                f"{self.directory} treated as miss (first: {key}: {reason})",
                CacheWarning,
                stacklevel=stacklevel + 1,
            )
        return found

    def get_many(
        self, keys: Iterable[str], *, statuses: Collection[str] | None = ("succeeded",)
    ) -> dict[str, CacheEntry]:
        """Entries for those `keys` that are stored with a status in `statuses` (None: any).

        Reads in batches of several hundred keys per query. A corrupted or unreadable entry is a
        miss and gives one `CacheWarning` per call. Raises ValueError for a key that is not a
        result key (a pending marker key, a non-string).
        """
        return self._read(keys, statuses, stacklevel=2)

    def get(
        self, key: str, *, statuses: Collection[str] | None = ("succeeded",)
    ) -> CacheEntry | None:
        """The entry for `key` if stored with a status in `statuses` (None: any), else None.

        A corrupted entry is a miss with a `CacheWarning`. Raises ValueError for a key that is
        not a result key.
        """
        return self._read([key], statuses, stacklevel=2).get(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self.get_many([key], statuses=None))

    # -- writing -----------------------------------------------------------------------------

    def _encode(self, entry: CacheEntry) -> bytes:
        files: list[str] = []
        row = self._encode_value(entry.row, files)
        header = {
            "key_format": KEY_FORMAT,
            "model": entry.model,
            "version": entry.version,
            "input": canonical_value(entry.input),
            "sample": entry.sample,
            "status": entry.status,
            "stored_at": entry.stored_at if entry.stored_at is not None else self._clock(),
            "files": sorted(set(files)),
            "row": row,
        }
        record = _dumps(_without_secrets(entry.record)).encode("utf-8", "surrogatepass")
        # surrogatepass: a lone surrogate in a string must not make the row uncacheable.
        head = _dumps(header).encode("utf-8", "surrogatepass")
        return head + b"\n" + zlib.compress(record, 1)

    def _encode_value(self, value: Any, files: list[str]) -> Any:
        if isinstance(value, OutputFile):
            reference = self.files.relative(value)
            files.append(reference)
            return {_FILE_MARK: reference, "url": value.url}
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, Mapping):
            return {str(k): self._encode_value(v, files) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._encode_value(v, files) for v in value]
        return value

    def put(self, key: str, entry: CacheEntry) -> None:
        """Store `entry` under `key` (replacing any), and drop the key's pending marker.

        Raises ValueError for a bad key or an output file outside this cache's file store, and
        TypeError for a value that is not JSON.
        """
        self.put_many([(key, entry)])

    def put_many(self, items: Iterable[tuple[str, CacheEntry]] | Mapping[str, CacheEntry]) -> None:
        """Store many entries (a mapping or (key, entry) pairs) in few transactions.

        Each stored key's pending marker is removed in the same transaction. Raises like `put`;
        nothing of a batch of up to 1,000 entries is stored if one of them cannot be encoded.
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        encoded = [(_check_key(k), self._encode(e), e.model) for k, e in pairs]
        for start in range(0, len(encoded), _WRITE_CHUNK):
            with self._cache.transact(retry=True):
                for key, text, model in encoded[start : start + _WRITE_CHUNK]:
                    self._cache.set(key, text, tag=model)
                    self._cache.delete(_PENDING_PREFIX + key)

    def delete(self, key: str) -> bool:
        """Remove the result stored under `key`; True if there was one."""
        return bool(self._cache.delete(_check_key(key)))

    # -- pending markers ---------------------------------------------------------------------

    def mark_pending(
        self, key: str, prediction_id: str, meta: Mapping[str, Any] | None = None
    ) -> None:
        """Record that the prediction for `key` was created as `prediction_id` and not finished.

        `meta` (JSON) is returned by `pending`; a ``"model"`` string in it lets `clear(model=)`
        find the marker. Raises ValueError for a bad key and TypeError for non-JSON meta.
        """
        _check_key(key)
        meta = _without_secrets(meta or {})
        value = PendingMarker(str(prediction_id), meta, self._clock()).to_json()
        model = meta.get("model")
        self._cache.set(
            _PENDING_PREFIX + key,
            encode_marker(value, _json_default),
            tag=model if isinstance(model, str) else None,
        )

    def write_batch(
        self,
        pending: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
        results: Mapping[str, CacheEntry] | None = None,
        cleared: Iterable[str] = (),
        *,
        owner: Owner | None = None,
        claims: Collection[str] = (),
        results_block: bool = True,
    ) -> set[str]:
        """Apply many writes in one transaction (one commit for many rows: group commit).

        Order within the batch: pending markers (``{key: (prediction_id, meta)}``, written with
        `owner`), then results (each also drops its key's marker), then `cleared` markers, so a
        row whose marker and result land in one batch ends with its result and no marker.
        Markers whose key is in `claims` are leases taken: one is not written when the key
        already has a result (unless `results_block` is False: a refresh) or a marker of another
        live run (`markers.is_held_elsewhere`); those keys are returned. Raises like `put` and
        `mark_pending`; nothing of the batch is written if one item cannot be encoded.
        """
        now = self._clock()
        markers = []
        for key, (prediction_id, meta) in (pending or {}).items():
            _check_key(key)
            meta = _without_secrets(meta or {})
            value = PendingMarker(str(prediction_id), meta, now, owner).to_json()
            model = meta.get("model")
            markers.append(
                (key, encode_marker(value, _json_default), model if isinstance(model, str) else None)
            )
        encoded = [(_check_key(k), self._encode(e), e.model) for k, e in (results or {}).items()]
        gone = [_check_key(k) for k in cleared]
        refused: set[str] = set()
        with self._cache.transact(retry=True):
            for key, text, model in markers:
                if key in claims and owner is not None and self._taken(key, owner, now, results_block):
                    refused.add(key)
                    continue
                self._cache.set(_PENDING_PREFIX + key, text, tag=model)
            for key, text, model in encoded:
                self._cache.set(key, text, tag=model)
                self._cache.delete(_PENDING_PREFIX + key)
            for key in gone:
                self._cache.delete(_PENDING_PREFIX + key)
        return refused

    def _taken(self, key: str, owner: Owner, now: float, results_block: bool) -> bool:
        """Inside a transaction: does `key` have a result, or another live run's marker?"""
        if results_block and self._cache.get(key, default=None) is not None:
            return True
        text = self._cache.get(_PENDING_PREFIX + key, default=None)
        if text is None:
            return False
        try:
            value = _loads(text)
        except (ValueError, TypeError):
            return False
        return isinstance(value, dict) and is_held_elsewhere(value, owner, now=now)

    def pending_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Pending markers for those `keys` that have one: ``{key: {"prediction_id", "meta",
        "marked_at"}}``. An unreadable marker is skipped with a `CacheWarning`."""
        prefixed = [_PENDING_PREFIX + _check_key(k) for k in keys]
        found: dict[str, dict[str, Any]] = {}
        bad = 0
        for key, text in self._select(prefixed):
            try:
                if isinstance(text, Exception):
                    raise text
                value = _loads(text)
                if not isinstance(value, dict) or not isinstance(value.get("prediction_id"), str):
                    raise ValueError("not a pending marker")
            except (ValueError, TypeError, _CorruptEntry):
                bad += 1
                continue
            found[key[len(_PENDING_PREFIX) :]] = value
        if bad:
            warnings.warn(
                f"{bad} unreadable pending marker(s) in {self.directory} ignored",
                CacheWarning,
                stacklevel=2,
            )
        return found

    def pending(self, key: str) -> dict[str, Any] | None:
        """The pending marker of `key` (``{"prediction_id", "meta", "marked_at"}``) or None."""
        return self.pending_many([key]).get(key)

    def clear_pending(self, key: str) -> bool:
        """Remove the pending marker of `key`; True if there was one."""
        return bool(self._cache.delete(_PENDING_PREFIX + _check_key(key)))

    # -- management --------------------------------------------------------------------------

    def info(self) -> CacheInfo:
        """Count entries (by model), pending markers and bytes on disk (database and files)."""
        sql = self._cache._sql
        by_model: dict[str, int] = {}
        pending = 0
        for is_pending, tag, count in sql(
            "SELECT substr(key, 1, ?) = ?, tag, COUNT(*) FROM Cache WHERE raw = 1 GROUP BY 1, 2",
            (len(_PENDING_PREFIX), _PENDING_PREFIX),
        ).fetchall():
            if is_pending:
                pending += count
            else:
                name = tag if isinstance(tag, str) else ""
                by_model[name] = by_model.get(name, 0) + count
        files, file_bytes = self.files.usage()
        total = 0
        for root, _, names in os.walk(self.directory):
            for name in names:
                with contextlib.suppress(OSError):
                    total += (Path(root) / name).lstat().st_size
        return CacheInfo(
            directory=self.directory,
            entries=sum(by_model.values()),
            pending=pending,
            bytes=total,
            files=files,
            file_bytes=file_bytes,
            entries_by_model=by_model,
        )

    def clear(self, model: str | None = None, older_than: float | timedelta | None = None) -> int:
        """Remove results (and pending markers) matching every filter given; return the number
        of results removed.

        `model` is the reference text stored with the entry; `older_than` (seconds or timedelta)
        selects entries stored longer ago than that. With no filter everything goes, output files
        included; otherwise every output file no entry references any more (and untouched for
        `_PRUNE_GRACE_S`, to spare a concurrent run that just downloaded it) is deleted too, even
        when no entry matched: files left by earlier clears are reclaimed then. Raises ValueError
        for a negative `older_than`.
        """
        if isinstance(older_than, timedelta):
            older_than = older_than.total_seconds()
        if older_than is not None and older_than < 0:
            raise ValueError(f"older_than must be >= 0, got {older_than!r}")
        if model is None and older_than is None:
            removed = self.info().entries
            self._cache.clear(retry=True)
            self.files.prune(set(), grace_seconds=0.0)
            return removed
        conditions: list[str] = ["raw = 1"]
        params: list[str | float] = []
        if model is not None:
            conditions.append("tag = ?")
            params.append(model)
        if older_than is not None:
            conditions.append("store_time < ?")
            params.append(self._clock() - older_than)
        keys = [
            key
            for (key,) in self._cache._sql(
                f"SELECT key FROM Cache WHERE {' AND '.join(conditions)}", params
            ).fetchall()
        ]
        removed = 0
        for chunk in _chunks(keys, _WRITE_CHUNK):
            with self._cache.transact(retry=True):
                for key in chunk:
                    if self._cache.delete(key) and not key.startswith(_PENDING_PREFIX):
                        removed += 1
        # Pruned even when nothing matched: an earlier clear's files may be past the grace now.
        self.files.prune(self._referenced_files(), grace_seconds=_PRUNE_GRACE_S)
        return removed

    def _referenced_files(self) -> set[str]:
        referenced: set[str] = set()
        rows = self._cache._sql(
            "SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND substr(key, 1, ?) != ?",
            (len(_PENDING_PREFIX), _PENDING_PREFIX),
        ).fetchall()
        fetch = self._cache._disk.fetch
        for _key, mode, filename, value in rows:
            try:
                header = _loads(fetch(mode, filename, value, False).partition(b"\n")[0])
                referenced.update(header.get("files") or ())
            except (OSError, ValueError, TypeError, AttributeError, _CorruptEntry):
                continue
        return referenced


_open_caches: dict[Path, ResultCache] = {}
_open_lock = threading.Lock()


def cache_directory(
    cache: bool | str | os.PathLike[str] | ResultCache | None = True,
) -> Path | None:
    """The absolute directory a ``cache=`` option names, without opening anything: True the
    default directory (`default_cache_dir`), a str or path that directory, a ResultCache its own;
    None for False or None. Raises ConfigurationError for any other value."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, ResultCache):
        return cache.directory
    if cache is True:
        directory = default_cache_dir()
    elif isinstance(cache, (str, os.PathLike)) and os.fspath(cache):
        directory = Path(cache).expanduser()
    else:
        raise ConfigurationError(
            "cache must be True, False, a directory path or a ResultCache, "
            f"got {type(cache).__name__}"
        )
    return directory.absolute()


def open_cache(
    cache: bool | str | os.PathLike[str] | ResultCache | None = True,
) -> ResultCache | None:
    """The `ResultCache` a ``cache=`` option asks for.

    True: the default directory (`default_cache_dir`); False or None: no cache (None); a str or
    path: that directory; a ResultCache: itself. Caches are shared per directory within a process.
    Raises ConfigurationError for any other value or an unusable directory.
    """
    if isinstance(cache, ResultCache):
        return cache
    directory = cache_directory(cache)
    if directory is None:
        return None
    with _open_lock:
        existing = _open_caches.get(directory)
        # A directory deleted behind our back would swallow writes into an unlinked database.
        if existing is not None and (directory / diskcache.core.DBNAME).exists():
            return existing
        opened = _open_caches[directory] = ResultCache(directory)
        return opened


def cache_info(cache: bool | str | os.PathLike[str] | ResultCache = True) -> CacheInfo:
    """`ResultCache.info` of the cache `open_cache(cache)` gives. Raises ConfigurationError."""
    opened = open_cache(cache)
    if opened is None:
        raise ConfigurationError("cache_info needs a cache, not cache=False")
    return opened.info()


def clear_cache(
    model: str | None = None,
    older_than: float | timedelta | None = None,
    *,
    cache: bool | str | os.PathLike[str] | ResultCache = True,
) -> int:
    """`ResultCache.clear` on the cache `open_cache(cache)` gives. Raises ConfigurationError."""
    opened = open_cache(cache)
    if opened is None:
        raise ConfigurationError("clear_cache needs a cache, not cache=False")
    return opened.clear(model=model, older_than=older_than)
