"""Cache keys: canonical JSON of what determines a prediction's result, hashed.

The key form is a contract (results cached by one release must be found by the next):

    key = "rb1:sha256:" + hex( sha256( utf8( canonical_json(
              {"input": <input>, "sample": <sample>, "version": <resolved version>}
          ))))

``rb1`` is the key-format version (`KEY_FORMAT`) and ``sha256`` the hash algorithm; both are part
of the key so that a future format can never be confused with this one.

The hashed document has exactly three members:

- ``version``: the resolved model version the runner passes, a string: a 64-hex version id; for an
  official model without versions its ``owner/name``; for a deployment the deployment's current
  version id. ``owner/name`` references are resolved to a version id before keying, so a new model
  version never serves a stale result.
- ``input``: the prediction input; a file input (any object with a ``sha256`` hex attribute, such as
  `replibatch._table.inputs.FileInput`) is replaced by the string ``"sha256:<hex>"`` of its content.
- ``sample``: the sample index, an integer >= 0 (0 unless repeats of identical inputs are wanted).

Canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
allow_nan=False)`` applied after normalising the value:

- objects: keys must be strings; member order never matters (keys are sorted by code point).
- arrays: lists and tuples (and 1-d numpy arrays) are arrays; order matters.
- numbers: numbers that compare equal are written the same way. An integral number (``1``, ``1.0``,
  ``np.int64(1)``, ``np.float32(1.0)``, ``-0.0``) is written as an integer (``1``, ``0``); any other
  float is written as Python's shortest round-trip ``repr`` of the 64-bit value (``0.1``,
  ``1e-07``). numpy floats are converted with ``float()``, so ``np.float32(0.1)`` is the double
  ``0.10000000149011612`` (the value that is sent), not ``0.1``. NaN and infinities raise
  ValueError.
- ``True``/``False``/``None`` (and numpy booleans) are ``true``/``false``/``null``; booleans are
  never numbers.
- strings: non-ASCII characters are written as ``\\uXXXX`` escapes (``ensure_ascii=True``).

Example: version ``"acme/echo"``, input ``{"seed": 1.0, "prompt": "héllo"}``, sample 0 is hashed
from the exact text

    {"input":{"prompt":"h\\u00e9llo","seed":1},"sample":0,"version":"acme/echo"}
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["HASH_ALGORITHM", "KEY_FORMAT", "cache_key", "canonical_json", "canonical_value"]

KEY_FORMAT = "rb1"
HASH_ALGORITHM = "sha256"
_KEY_PREFIX = f"{KEY_FORMAT}:{HASH_ALGORITHM}:"

_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode


def _where(path: tuple[Any, ...]) -> str:
    return path[0] + "".join(f"[{step!r}]" for step in path[1:])


def _number(value: float, path: tuple[Any, ...]) -> int | float:
    if not math.isfinite(value):
        raise ValueError(
            f"{_where(path)} is {value!r}: NaN and infinity cannot be part of a cache key"
        )
    # Equal numbers must give equal text: 1.0 and 1 are both written as 1.
    return int(value) if value.is_integer() else value


def _normalize(value: Any, path: tuple[Any, ...]) -> Any:
    kind = type(value)
    # Fast paths for the plain JSON types that make up almost every input; the path of an item
    # is only built when it is needed (recursion or an error).
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return _number(value, path)
    if kind is dict or isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise TypeError(
                        f"{_where(path)} has a key {key!r} of type {type(key).__name__}: "
                        "keys must be strings"
                    )
                key = str(key)
            item_kind = type(item)
            if item_kind is str or item_kind is int or item_kind is bool or item is None:
                out[key] = item
            elif item_kind is float:
                out[key] = _number(item, (*path, key))
            else:
                out[key] = _normalize(item, (*path, key))
        return out
    if kind is list or kind is tuple:
        return [_normalize(item, (*path, i)) for i, item in enumerate(value)]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _number(float(value), path)
    if isinstance(value, np.ndarray):
        return [_normalize(item, (*path, i)) for i, item in enumerate(value.tolist())]
    if isinstance(getattr(value, "sha256", None), str):
        content_hash = getattr(value, "content_hash", None)
        return content_hash() if callable(content_hash) else f"sha256:{value.sha256}"
    raise TypeError(
        f"{_where(path)} is a {kind.__name__}, which is not JSON: use str, numbers, bool, None, "
        "lists, dicts or a file input"
    )


def canonical_value(value: Any) -> Any:
    """Return `value` as plain JSON types, normalised as the module docstring describes.

    Raises ValueError for NaN or infinity and TypeError for a value that is not JSON (a non-string
    dict key, an arbitrary object); the message names where in the value the problem is.
    """
    return _normalize(value, ("value",))


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of `value` (sorted keys, no whitespace, ASCII only).

    Raises ValueError for NaN or infinity and TypeError for a value that is not JSON.
    """
    return _encode(_normalize(value, ("value",)))


def cache_key(version: str, input: Mapping[str, Any], sample: int = 0) -> str:
    """Return the cache key ``"rb1:sha256:<hex>"`` of one prediction.

    Raises ValueError for an empty version, a negative sample or NaN/infinity in the input, and
    TypeError for a version that is not a string, a non-integer sample or an input that is not JSON.
    """
    if not isinstance(version, str):
        raise TypeError(f"version must be a string, got {type(version).__name__}")
    if not version:
        raise ValueError("version must not be empty")
    if isinstance(sample, (bool, np.bool_)) or not isinstance(sample, (int, np.integer)):
        raise TypeError(f"sample must be an integer, got {type(sample).__name__}")
    if sample < 0:
        raise ValueError(f"sample must be >= 0, got {sample}")
    if not isinstance(input, Mapping):
        raise TypeError(f"input must be a mapping, got {type(input).__name__}")
    document = {"input": _normalize(input, ("input",)), "sample": int(sample), "version": version}
    digest = hashlib.sha256(_encode(document).encode("ascii")).hexdigest()
    return _KEY_PREFIX + digest
