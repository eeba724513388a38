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

import os
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import diskcache
import platformdirs

from replibatch._store.entries import CacheEntry, decode_entry, encode_entry
from replibatch._store.filestore import FileStore
from replibatch._store.gc import paused as gc_paused
from replibatch._store.manage import CacheInfo, clear_entries, describe
from replibatch._store.markers import Owner
from replibatch._store.pending import (
    PENDING_PREFIX,
    CacheWarning,
    check_key,
    encode_pending,
    is_taken,
    read_pending,
)
from replibatch._store.sqlite import WRITE_CHUNK, CorruptEntry, open_database, select
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


def default_cache_dir() -> Path:
    """``$REPLIBATCH_CACHE_DIR`` if set, else the platform's user cache dir for replibatch."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("replibatch", appauthor=False))


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

        return open_database(directory, unusable)

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

    def _read(
        self, keys: Iterable[str], statuses: Collection[str] | None, stacklevel: int
    ) -> dict[str, CacheEntry]:
        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        found: dict[str, CacheEntry] = {}
        corrupt: list[tuple[str, str]] = []
        status_set = None if statuses is None else frozenset(statuses)
        with gc_paused(len(wanted)):
            for key, text in select(self._cache, wanted):
                try:
                    entry = decode_entry(text, self.files)
                except CorruptEntry as exc:
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
        return encode_entry(entry, self.files, self._clock())

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
        encoded = [(check_key(k), self._encode(e), e.model) for k, e in pairs]
        for start in range(0, len(encoded), WRITE_CHUNK):
            with self._cache.transact(retry=True):
                for key, text, model in encoded[start : start + WRITE_CHUNK]:
                    self._cache.set(key, text, tag=model)
                    self._cache.delete(PENDING_PREFIX + key)

    def delete(self, key: str) -> bool:
        """Remove the result stored under `key`; True if there was one."""
        return bool(self._cache.delete(check_key(key)))

    # -- pending markers (stored by `replibatch._store.pending`) ----------------------------

    def mark_pending(
        self, key: str, prediction_id: str, meta: Mapping[str, Any] | None = None
    ) -> None:
        """Record that the prediction for `key` was created as `prediction_id` and not finished.

        `meta` (JSON) is returned by `pending`; a ``"model"`` string in it lets `clear(model=)`
        find the marker. Raises ValueError for a bad key and TypeError for non-JSON meta.
        """
        check_key(key)
        text, tag = encode_pending(prediction_id, meta, self._clock())
        self._cache.set(PENDING_PREFIX + key, text, tag=tag)

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
        markers = [
            (check_key(key), *encode_pending(prediction_id, meta, now, owner))
            for key, (prediction_id, meta) in (pending or {}).items()
        ]
        encoded = [(check_key(k), self._encode(e), e.model) for k, e in (results or {}).items()]
        gone = [check_key(k) for k in cleared]
        refused: set[str] = set()
        with self._cache.transact(retry=True):
            for key, text, tag in markers:
                if key in claims and owner is not None and is_taken(
                    self._cache, key, owner, now, results_block
                ):
                    refused.add(key)
                    continue
                self._cache.set(PENDING_PREFIX + key, text, tag=tag)
            for key, text, model in encoded:
                self._cache.set(key, text, tag=model)
                self._cache.delete(PENDING_PREFIX + key)
            for key in gone:
                self._cache.delete(PENDING_PREFIX + key)
        return refused

    def pending_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Pending markers for those `keys` that have one: ``{key: {"prediction_id", "meta",
        "marked_at"}}``. An unreadable marker is skipped with a `CacheWarning`."""
        return read_pending(self._cache, keys, self.directory)

    def pending(self, key: str) -> dict[str, Any] | None:
        """The pending marker of `key` (``{"prediction_id", "meta", "marked_at"}``) or None."""
        return self.pending_many([key]).get(key)

    def clear_pending(self, key: str) -> bool:
        """Remove the pending marker of `key`; True if there was one."""
        return bool(self._cache.delete(PENDING_PREFIX + check_key(key)))

    # -- management (`replibatch._store.manage`) -------------------------------------------

    def info(self) -> CacheInfo:
        """Count entries (by model), pending markers and bytes on disk (database and files)."""
        return describe(self._cache, self.files, self.directory)

    def clear(self, model: str | None = None, older_than: float | timedelta | None = None) -> int:
        """Remove results (and pending markers) matching every filter given; return the number
        of results removed (see `replibatch._store.manage.clear_entries`: with no filter,
        everything, output files included; else unreferenced files are pruned too). Raises
        ValueError for a negative `older_than`.
        """
        return clear_entries(self._cache, self.files, self._clock, model, older_than)


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
