"""Human ratings that persist: `rate` stores them, `ratings` reads them back aligned to a frame.

Ratings are kept next to the result cache, in their own diskcache SQLite database
(``<cache dir>/ratings/``), keyed by each row's ``cache_key`` (the key of the prediction that
produced the output). So a rating survives kernel restarts and re-runs (a re-run of the same row
has the same key), and every notebook and process using that cache directory sees it. Clearing
the result cache leaves ratings alone.

Kinds of rating, one value of each per row:

| kind | values | `rate(...)` value | column in `ratings()` |
|---|---|---|---|
| ``thumbs`` | up / down | True, False, ``"up"``, ``"down"``, ``"👍"``, ``"👎"`` | ``rating_thumbs``: 1.0 up, 0.0 down |
| ``stars`` | 1 to 5 | an int 1-5 | ``rating_stars`` |
| ``best`` | best of its prompt | ``"best"`` | ``rating_best``: 1.0 for the best row, 0.0 for the other rows of that prompt |

Marking a row ``best`` takes it from the other rows of the same group (rows sharing the
``prompt`` column by default, ``group=`` picks other columns). Values are JSON (never pickles).
"""  # noqa: E501 - the table's rows cannot wrap

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
import numpy as np
import pandas as pd

from replibatch._store.cache import ResultCache, open_cache
from replibatch._table.frame import CACHE_KEY_COLUMN
from replibatch.errors import ConfigurationError

__all__ = ["KINDS", "Rating", "RatingStore", "rate", "ratings"]

KINDS: tuple[str, ...] = ("thumbs", "stars", "best")
_THUMBS = {"up": 1, "down": 0, "👍": 1, "👎": 0, "+1": 1, "-1": 0}
_DIRECTORY = "ratings"


@dataclass(frozen=True)
class Rating:
    """One rating to store: its `kind` and `value` (1/0 thumbs, 1-5 stars, 1 best; None clears)."""

    kind: str
    value: int | None


def parse_rating(value: Any, kind: str | None = None) -> Rating:
    """The Rating a `rate(..., value, kind=...)` call means (see the module docstring).

    None clears (every kind, or `kind`). Raises ConfigurationError for a value that is not a
    rating or does not fit `kind`.
    """
    if kind is not None and kind not in KINDS:
        raise ConfigurationError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if value is None:
        return Rating(kind or "*", None)
    if isinstance(value, (bool, np.bool_)):
        parsed = Rating("thumbs", int(bool(value)))
    elif isinstance(value, str) and value.strip().lower() in _THUMBS:
        parsed = Rating("thumbs", _THUMBS[value.strip().lower()])
    elif isinstance(value, str) and value.strip().lower() == "best":
        parsed = Rating("best", 1)
    elif isinstance(value, (int, np.integer)) and kind != "thumbs" and 1 <= int(value) <= 5:
        parsed = Rating("stars", int(value))
    elif isinstance(value, (int, np.integer)) and kind == "thumbs" and int(value) in (0, 1):
        parsed = Rating("thumbs", int(value))
    elif isinstance(value, (float, np.floating)) and float(value).is_integer() and 1 <= value <= 5:
        parsed = Rating("stars", int(value))
    else:
        raise ConfigurationError(
            f"{value!r} is not a rating: use True/False or 'up'/'down' (thumbs), an int 1-5 "
            "(stars), 'best', or None to clear"
        )
    if kind is not None and parsed.kind != kind:
        raise ConfigurationError(f"{value!r} is a {parsed.kind} rating, not {kind}")
    return parsed


class RatingStore:
    """The ratings database of one cache directory (``<directory>/ratings/``).

    Safe for several threads and processes (diskcache/SQLite). Raises ConfigurationError when
    the directory cannot be created or opened.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory) / _DIRECTORY
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Plain str values are stored as text by diskcache, so nothing is ever pickled.
            self._db = diskcache.Cache(str(self.directory), eviction_policy="none",
                                       size_limit=2**40)
        except (OSError, diskcache.Timeout) as exc:
            raise ConfigurationError(f"ratings in {self.directory} are not usable: {exc}") from None

    def get_many(self, keys: Sequence[str | None]) -> list[dict[str, Any]]:
        """The stored ratings of each key ({} when none; None keys give {})."""
        out = []
        for key in keys:
            raw = self._db.get(key) if isinstance(key, str) else None
            out.append(json.loads(raw) if isinstance(raw, str) else {})
        return out

    def update(self, key: str, kind: str, value: int | None) -> None:
        """Set (or with None clear; kind ``"*"`` clears every kind) one rating of `key`."""
        with self._db.transact(retry=True):
            raw = self._db.get(key)
            current = json.loads(raw) if isinstance(raw, str) else {}
            for name in (KINDS if kind == "*" else (kind,)):
                if value is None:
                    current.pop(name, None)
                else:
                    current[name] = value
            if any(name in current for name in KINDS):
                current["rated_at"] = time.time()
                self._db.set(key, json.dumps(current, sort_keys=True), retry=True)
            else:
                self._db.delete(key, retry=True)

    def close(self) -> None:
        self._db.close()


_stores: dict[Path, RatingStore] = {}
_stores_lock = threading.Lock()


def open_ratings(cache: bool | str | os.PathLike[str] | ResultCache = True) -> RatingStore:
    """The RatingStore beside the cache `cache=` names (as `replibatch.run` reads it).

    Raises ConfigurationError for cache=False (ratings need a directory) or an unusable one.
    """
    opened = open_cache(cache)
    if opened is None:
        raise ConfigurationError("ratings live in the cache directory: cache=False has none")
    directory = opened.directory
    with _stores_lock:
        store = _stores.get(directory)
        if store is None or not (store.directory / diskcache.core.DBNAME).exists():
            store = _stores[directory] = RatingStore(directory)
        return store


def _keys(res: pd.DataFrame) -> list[str | None]:
    if not isinstance(res, pd.DataFrame):
        raise ConfigurationError(f"expected a result frame, got {type(res).__name__}")
    if CACHE_KEY_COLUMN not in res.columns:
        raise ConfigurationError(
            f"the frame has no {CACHE_KEY_COLUMN!r} column: ratings are stored by the cache key "
            "of each row, which rb.run adds (run the frame again, with the cache on, to get it)"
        )
    return [key if isinstance(key, str) else None for key in res[CACHE_KEY_COLUMN].tolist()]


def _positions(res: pd.DataFrame, rows: Any) -> list[int]:
    """Row positions for an index label, a list of labels, or a boolean mask/Series."""
    if isinstance(rows, pd.Series) and rows.dtype == bool:
        mask = rows.reindex(res.index, fill_value=False).to_numpy(dtype=bool)
        return [int(i) for i in np.flatnonzero(mask)]
    if isinstance(rows, np.ndarray) and rows.dtype == bool:
        if len(rows) != len(res):
            raise ConfigurationError(f"a mask of {len(rows)} values for a frame of {len(res)} rows")
        return [int(i) for i in np.flatnonzero(rows)]
    labels = list(rows) if isinstance(rows, (list, tuple, pd.Index, np.ndarray)) else [rows]
    positions: list[int] = []
    for label in labels:
        if not isinstance(label, Hashable) or label not in res.index:
            raise ConfigurationError(f"row {label!r} is not in the frame's index")
        # pandas-stubs want an Index here; pandas takes any list-like (and Index([tuple]) would
        # build a MultiIndex).
        found = res.index.get_indexer_for([label])  # type: ignore[arg-type]
        positions.extend(int(p) for p in found)
    return positions


def _group_columns(res: pd.DataFrame, group: str | Sequence[str] | None) -> list[str]:
    names = [group] if isinstance(group, str) else list(group or [])
    if group is None:
        names = ["prompt"] if "prompt" in res.columns else []
    missing = [n for n in names if n not in res.columns]
    if missing:
        raise ConfigurationError(f"group column {missing[0]!r} is not in the frame")
    return names


def _group_of(res: pd.DataFrame, names: list[str], position: int) -> list[int]:
    if not names:
        return list(range(len(res)))  # no prompt column: the whole frame is one group
    row = res.iloc[position]
    mask = np.ones(len(res), dtype=bool)
    for name in names:
        mask &= (res[name] == row[name]).to_numpy(dtype=bool, na_value=False)
    return [int(i) for i in np.flatnonzero(mask)]


def rate(
    res: pd.DataFrame,
    rows: Any,
    value: Any,
    *,
    kind: str | None = None,
    group: str | Sequence[str] | None = None,
    cache: bool | str | os.PathLike[str] | ResultCache = True,
) -> None:
    """Store a rating for `rows` of `res` (an index label, a list of labels or a boolean mask).

    `value`: True/False or ``"up"``/``"down"`` (thumbs), an int 1-5 (stars), ``"best"`` (best of
    its `group`, by default the rows with the same ``prompt``; it is taken from the group's other
    rows), or None to clear (every kind, or `kind`). `cache`: the cache directory, as `run` takes.

    Raises ConfigurationError (a ValueError) for a value that is not a rating, a label not in
    the index, a frame without ``cache_key`` or a selected row without one (it never ran).
    """
    rating = parse_rating(value, kind)
    keys = _keys(res)
    positions = _positions(res, rows)
    unkeyed = [res.index[p] for p in positions if keys[p] is None]
    if unkeyed:
        raise ConfigurationError(f"row {unkeyed[0]!r} has no cache key (it was never run), so it "
                                 "cannot be rated")
    store = open_ratings(cache)
    names = _group_columns(res, group) if rating.kind == "best" and rating.value else []
    for position in positions:
        if rating.kind == "best" and rating.value:
            for other in _group_of(res, names, position):
                other_key = keys[other]
                if other_key is not None and other_key != keys[position]:
                    store.update(other_key, "best", None)
        store.update(str(keys[position]), rating.kind, rating.value)


def ratings(
    res: pd.DataFrame,
    kind: str | None = None,
    *,
    group: str | Sequence[str] | None = None,
    cache: bool | str | os.PathLike[str] | ResultCache = True,
) -> pd.DataFrame | pd.Series:
    """The stored ratings of `res`'s rows, aligned to its index, NaN where unrated.

    With `kind` (``"thumbs"``, ``"stars"`` or ``"best"``): a float Series ``rating_<kind>``;
    without: a DataFrame of the three columns. ``rating_best`` is 1.0 for a group's best row and
    0.0 for the other rows of a group that has one (NaN where its group has none).

    Raises ConfigurationError (a ValueError) for an unknown kind or a frame without ``cache_key``.
    """
    if kind is not None and kind not in KINDS:
        raise ConfigurationError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    keys = _keys(res)
    stored = open_ratings(cache).get_many(keys)
    columns: dict[str, np.ndarray] = {}
    for name in KINDS:
        columns[f"rating_{name}"] = np.array(
            [float(entry[name]) if name in entry else np.nan for entry in stored], dtype=float
        )
    best = columns["rating_best"]
    if not np.isnan(best).all():
        names = _group_columns(res, group)
        for position in np.flatnonzero(best == 1.0):
            for other in _group_of(res, names, int(position)):
                if np.isnan(best[other]):
                    best[other] = 0.0
    frame = pd.DataFrame(columns, index=res.index)
    return frame[f"rating_{kind}"] if kind is not None else frame
