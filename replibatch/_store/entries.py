"""Result entries of the cache: the `CacheEntry` record and its stored form.

A stored entry is a JSON header line and the zlib-compressed prediction record (see
`replibatch._store.cache` for the layout). The header is all a cache hit needs; the record is
decompressed and parsed only when asked for, which keeps reading many entries fast. Output files
in the row are stored as ``{"$rb_file": <reference>, "url": ...}`` relative to the cache
directory and read back as absolute `OutputFile` values.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from typing import Any

from replibatch._store.filestore import FileStore, OutputFile
from replibatch._store.keys import KEY_FORMAT, canonical_value
from replibatch._store.sqlite import CorruptEntry, encode_json, loads

__all__ = ["FILE_MARK", "CacheEntry", "decode_entry", "encode_entry", "entry_files", "without_secrets"]

FILE_MARK = "$rb_file"
_SECRET_FIELDS = frozenset({"api_token", "authorization", "headers", "token"})


def without_secrets(value: Mapping[str, Any]) -> dict[str, Any]:
    """`value` without its secret-looking top-level fields (``api_token``, ``authorization``,
    ``headers``, ``token``): secrets never reach the cache."""
    return {k: v for k, v in value.items() if str(k).lower() not in _SECRET_FIELDS}


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


def encode_entry(entry: CacheEntry, files: FileStore, now: float) -> bytes:
    """The stored bytes of `entry` (``stored_at`` defaults to `now`).

    Raises ValueError for an output file outside `files` and TypeError for a value that is not
    JSON.
    """
    found: list[str] = []
    row = _encode_value(entry.row, files, found)
    header = {
        "key_format": KEY_FORMAT,
        "model": entry.model,
        "version": entry.version,
        "input": canonical_value(entry.input),
        "sample": entry.sample,
        "status": entry.status,
        "stored_at": entry.stored_at if entry.stored_at is not None else now,
        "files": sorted(set(found)),
        "row": row,
    }
    record = encode_json(without_secrets(entry.record))
    head = encode_json(header)
    return head + b"\n" + zlib.compress(record, 1)


def _encode_value(value: Any, files: FileStore, found: list[str]) -> Any:
    if isinstance(value, OutputFile):
        reference = files.relative(value)
        found.append(reference)
        return {FILE_MARK: reference, "url": value.url}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _encode_value(v, files, found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(v, files, found) for v in value]
    return value


def decode_entry(text: bytes | CorruptEntry, files: FileStore) -> CacheEntry:
    """The entry stored as `text`, its output files resolved in `files`; the record stays
    packed until read. Raises CorruptEntry for anything unreadable, or a missing output file."""
    if isinstance(text, CorruptEntry):
        raise text
    if not isinstance(text, bytes):
        raise CorruptEntry("value is not bytes")
    head, _, packed_record = text.partition(b"\n")
    try:
        header = loads(head)
        row = header["row"]
        if header.get("files"):
            row = _resolve_files(row, files)
        # Built field by field, not through __init__: reading thousands of hits is the hot path.
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
        raise CorruptEntry(f"unreadable entry ({type(exc).__name__}: {exc})") from None
    if type(row) is not dict or type(entry.status) is not str:
        raise CorruptEntry("unreadable entry (bad row or status)")
    entry._record = None
    entry._packed_record = packed_record
    return entry


def _resolve_files(value: Any, files: FileStore) -> Any:
    if isinstance(value, dict):
        if FILE_MARK in value:
            file = files.resolve(value[FILE_MARK], value.get("url"))
            if not file.path.is_file():
                raise ValueError(f"output file {value[FILE_MARK]} is missing")
            return file
        return {k: _resolve_files(v, files) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_files(v, files) for v in value]
    return value


def entry_files(text: bytes) -> list[str]:
    """The file references the stored entry `text` names (its header's ``files``).

    Raises ValueError, TypeError or AttributeError for a value that is not an entry.
    """
    return list(loads(text.partition(b"\n")[0]).get("files") or ())
