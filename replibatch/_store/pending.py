"""Pending markers in the cache's database: "this row's prediction was created, not finished".

A marker lives under ``pending:<key>`` beside the key's result, tagged with its model so that
``clear(model=)`` finds it, and is never served as a result. Its value is a
`replibatch._store.markers.PendingMarker` as JSON. This module stores and reads them; what a
marker means to a run (leases, heartbeats, owners) is `markers`'.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import diskcache

from replibatch._store.entries import without_secrets
from replibatch._store.markers import Owner, PendingMarker, is_held_elsewhere
from replibatch._store.sqlite import CorruptEntry, encode_json, loads, select

__all__ = ["PENDING_PREFIX", "CacheWarning", "check_key", "encode_pending", "is_taken", "read_pending"]

PENDING_PREFIX = "pending:"


class CacheWarning(UserWarning):
    """A cache entry could not be read and was treated as a miss."""


def check_key(key: Any) -> str:
    """`key` if it is a result key; ValueError for a non-string or a pending marker's key."""
    if type(key) is not str or key.startswith(PENDING_PREFIX):
        raise ValueError(f"not a result key: {key!r}")
    return key


def encode_pending(
    prediction_id: str, meta: Mapping[str, Any] | None, now: float, owner: Owner | None = None
) -> tuple[bytes, str | None]:
    """The stored bytes of a marker and its tag (the ``"model"`` string of `meta`, if any).

    Secret-looking fields of `meta` are dropped. Raises TypeError for `meta` that is not JSON.
    """
    clean = without_secrets(meta or {})
    value = PendingMarker(str(prediction_id), clean, now, owner).to_json()
    model = clean.get("model")
    return encode_json(value), model if isinstance(model, str) else None


def read_pending(db: diskcache.Cache, keys: Iterable[str], directory: Path) -> dict[str, dict[str, Any]]:
    """The markers of those result `keys` that have one: ``{key: {"prediction_id", "meta",
    "marked_at", ...}}``. An unreadable marker is skipped, with one `CacheWarning` naming
    `directory`. Raises ValueError for a key that is not a result key."""
    prefixed = [PENDING_PREFIX + check_key(k) for k in keys]
    found: dict[str, dict[str, Any]] = {}
    bad = 0
    for key, text in select(db, prefixed):
        try:
            if isinstance(text, CorruptEntry):
                raise text
            value = loads(text)
            if not isinstance(value, dict) or not isinstance(value.get("prediction_id"), str):
                raise ValueError("not a pending marker")
        except (ValueError, TypeError, CorruptEntry):
            bad += 1
            continue
        found[key[len(PENDING_PREFIX) :]] = value
    if bad:
        warnings.warn(
            f"{bad} unreadable pending marker(s) in {directory} ignored",
            CacheWarning,
            stacklevel=3,
        )
    return found


def is_taken(db: diskcache.Cache, key: str, owner: Owner, now: float, results_block: bool) -> bool:
    """Inside a transaction: does `key` have a result (when `results_block`), or a marker of
    another live run than `owner`? An unreadable marker does not hold the key."""
    if results_block and db.get(key, default=None) is not None:
        return True
    text = db.get(PENDING_PREFIX + key, default=None)
    if text is None:
        return False
    try:
        value = loads(text)
    except (ValueError, TypeError):
        return False
    return isinstance(value, dict) and is_held_elsewhere(value, owner, now=now)
